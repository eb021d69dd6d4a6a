"""Checkpoints load without unpickling code (issue 30, points 1 and 3): the plain on-disk form,
a planted pickle refused before it runs, and the pickled checkpoints of older versions refused by
default and resumed bit-exactly on the opt-in."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark.training.loop as train_module
from benchmark.cli import main
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.records.checkpoint import checkpoint_steps, load_latest_checkpoint, save_checkpoint
from benchmark.records.checkpoint_format import from_file
from benchmark.records.pickled_checkpoints import TRUST_ENV, TRUST_FLAG
from benchmark.training.loop import train_run


def small(**kw) -> RunConfig:
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 3, "layers": 1, "epochs": 4,
            "eval_k": 10, "eval_n": 20}
    return RunConfig(**{**base, **kw})


def write_pickled(pt: Path, payload: object) -> None:
    """A checkpoint as the older versions (or an attacker) wrote it: a pickle, with a checksum
    that matches, since whoever brings the file brings the checksum too."""
    torch.save(payload, pt)
    checksum = pt.with_suffix(".sha256.json")
    checksum.write_text(json.dumps({"file": pt.name,
                                    "sha256": hashlib.sha256(pt.read_bytes()).hexdigest()}))


class Planted:
    """Unpickling this creates the marker file: any code at all could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(autouse=True)
def untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def test_the_numpy_generator_state_round_trips_through_the_plain_form(tmp_path):
    rng_state = np.random.RandomState(7)
    rng_state.standard_normal(3)  # a cached gaussian, so that every field of the state matters
    state = rng_state.get_state()
    save_checkpoint(tmp_path, {"step": 3, "rng": {"numpy": state}})
    pt = tmp_path / "checkpoints" / "step-0000000003.pt"
    torch.load(pt, weights_only=True)  # the file itself needs no pickle trust
    loaded = load_latest_checkpoint(tmp_path)["rng"]["numpy"]
    assert loaded[0] == state[0] and loaded[2:] == state[2:]
    assert loaded[1].dtype == np.uint32 and np.array_equal(loaded[1], state[1])
    restored = np.random.RandomState()
    restored.set_state(loaded)
    assert np.array_equal(restored.standard_normal(5), rng_state.standard_normal(5))


def test_a_field_the_plain_form_cannot_hold_fails_at_save_time(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint/curve/0/nll holds a numpy.float64"):
        save_checkpoint(tmp_path, {"step": 1, "curve": [{"nll": np.float64(1.5)}]})
    assert checkpoint_steps(tmp_path) == []


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "checkpoints").mkdir()
    write_pickled(tmp_path / "checkpoints" / "step-0000000005.pt",
                  {"step": 5, "model": {}, "x": Planted(marker)})
    with pytest.raises(UserError) as refused:
        load_latest_checkpoint(tmp_path)
    line = str(refused.value)
    assert "\n" not in line and "pickled checkpoint" in line and TRUST_FLAG in line
    assert not marker.exists()


def test_a_checkpoint_linked_from_outside_the_run_folder_is_refused(tmp_path):
    save_checkpoint(tmp_path / "elsewhere", {"step": 5})
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    for name in ("step-0000000005.pt", "step-0000000005.sha256.json"):
        (tmp_path / "run" / "checkpoints" / name).symlink_to(
            tmp_path / "elsewhere" / "checkpoints" / name)
    with pytest.raises(UserError, match=r"step-0000000005.pt: a link leading outside the run "
                                        r"folder \(to .*elsewhere.*\); not followed$"):
        load_latest_checkpoint(tmp_path / "run")


def test_evaluating_a_folder_with_a_planted_checkpoint_is_one_line(trained_run, tmp_path,
                                                                   capsys):
    marker = tmp_path / "marker"
    steps = checkpoint_steps(trained_run)
    write_pickled(trained_run / "checkpoints" / f"step-{steps[0]:010d}.pt",
                  {"step": steps[0], "x": Planted(marker)})
    code = main(["evaluate", str(trained_run), "--k", "2", "--n", "4", "--data-dir",
                 str(tmp_path / "data")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and "pickled checkpoint" in errors[0]
    assert not marker.exists()


class Crash(Exception):
    """Stands in for a kill between two checkpoints."""


def crash_at(monkeypatch, step: int) -> None:
    real_make_step = train_module._make_step

    def make_step(state, members, options):
        inner = real_make_step(state, members, options)

        def stepping(steps):
            if steps[0] == step:
                raise Crash
            return inner(steps)

        return stepping

    monkeypatch.setattr(train_module, "_make_step", make_step)


def test_an_old_pickled_checkpoint_is_refused_then_resumes_exactly_on_the_opt_in(
        synthetic_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "CHECK_EVERY", 3)  # checkpoints every 3 steps
    config = small()
    whole = train_run(config, tmp_path / "whole", synthetic_data_dir, show_progress=False,
                      checkpoint_every_s=0.0)
    killed = tmp_path / "killed"
    crash_at(monkeypatch, 13)
    with pytest.raises(Crash):
        train_run(config, killed, synthetic_data_dir, show_progress=False,
                  checkpoint_every_s=0.0)
    monkeypatch.undo()
    monkeypatch.setattr(train_module, "CHECK_EVERY", 3)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    steps = pickle_as_before(killed)
    assert steps and steps[0] < 20

    with pytest.raises(UserError) as refused:
        train_run(config, killed, synthetic_data_dir, show_progress=False,
                  checkpoint_every_s=0.0)
    assert "\n" not in str(refused.value) and TRUST_ENV in str(refused.value)

    monkeypatch.setenv(TRUST_ENV, "1")
    capsys.readouterr()
    resumed = train_run(config, killed, synthetic_data_dir, show_progress=False,
                        checkpoint_every_s=0.0)
    assert "rewrote the pickled checkpoint" in capsys.readouterr().err
    assert resumed["progress"]["resumed_from"] == [steps[0]]
    assert resumed["metrics"] == whole["metrics"]
    a, b = load_latest_checkpoint(tmp_path / "whole"), load_latest_checkpoint(killed)
    assert a["step"] == b["step"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    monkeypatch.delenv(TRUST_ENV)
    for pt in (killed / "checkpoints").glob("*.pt"):  # nothing left that needs the opt-in
        torch.load(pt, weights_only=True)


def pickle_as_before(run_dir: Path) -> list[int]:
    """Rewrite a run's checkpoints exactly as the code before issue 30 saved them (the payload
    itself pickled); their steps."""
    steps = checkpoint_steps(run_dir)
    for step in steps:
        pt = run_dir / "checkpoints" / f"step-{step:010d}.pt"
        write_pickled(pt, from_file(torch.load(pt, weights_only=True)))
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            torch.load(pt, weights_only=True)
    return steps


def test_evaluate_reads_an_old_checkpoint_only_with_the_flag(trained_run, synthetic_data_dir,
                                                             monkeypatch, capsys):
    monkeypatch.setenv(TRUST_ENV, "0")  # restored (unset) after the test, as the flag sets it
    pickle_as_before(trained_run)
    command = ["evaluate", str(trained_run), "--k", "2", "--n", "4", "--data-dir",
               str(synthetic_data_dir)]
    assert main(command) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and TRUST_FLAG in errors[0]
    assert main([*command, TRUST_FLAG]) == 0
