"""The execution options on the command line and in the record: --numerics, --tf32,
--no-cuda-graphs, --no-compile reach the trainer (train and sweep), and a run's record says how
it was computed, resumed runs included."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_fakes import fake_timer, fake_train_group

from benchmark.cli import build_parser
from benchmark.config import RunConfig
from benchmark.records.checkpoint import checkpoint_steps
from benchmark.sweeps.driver import run_sweep
from benchmark.sweeps.executors import InlineExecutor
from benchmark.sweeps.grids import SweepOptions, expand_grid
from benchmark.training.execution import ExecutionOptions, execution_from_args, numerics_segments
from benchmark.training.loop import train_run

REPO = Path(__file__).resolve().parents[1]
FAST_EAGER = ExecutionOptions(numerics="fast", compile_cpu=False)  # no compile time in tests


def small() -> RunConfig:
    return RunConfig(data="mnist-dynamic", model="iwae", k=3, layers=1, epochs=2, eval_k=10,
                     eval_n=20)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_flags_become_execution_options(command):
    base = (["train", "--data", "mnist-dynamic", "--model", "iwae", "--k", "5", "--layers", "1"]
            if command == "train" else ["sweep", "table1"])
    parser = build_parser()
    assert execution_from_args(parser.parse_args(base)) == ExecutionOptions()
    args = parser.parse_args([*base, "--numerics", "fast", "--tf32", "--no-cuda-graphs",
                              "--no-compile"])
    assert execution_from_args(args) == ExecutionOptions(
        numerics="fast", allow_tf32=True, cuda_graphs=False, compile_cpu=False)


def test_unknown_numerics_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "table1", "--numerics", "approximate"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_sweep_hands_its_options_to_every_task(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=2, data=("mnist-dynamic",)),
                       tmp_path)
    seen = []

    def group_runner(configs, run_dirs, data_dir, **kwargs):
        seen.append(kwargs["options"])
        return fake_train_group(configs, run_dirs, data_dir, **kwargs)

    report = run_sweep("table1", plan, data_dir=Path("unused"), group_runner=group_runner,
                       check_data=lambda name, d: None, options=FAST_EAGER, timer=fake_timer,
                       executor_factory=lambda n: InlineExecutor(), stream=io.StringIO(),
                       out=io.StringIO())
    assert report.exit_code == 0 and len(seen) == 6
    assert all(options == FAST_EAGER for options in seen)


def test_the_train_command_records_its_numerics(synthetic_data_dir, tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "benchmark", "train", "--data", "mnist-dynamic",
                    "--model", "vae", "--k", "2", "--layers", "1", "--steps", "3", "--eval-k",
                    "4", "--eval-n", "10", "--data-dir", str(synthetic_data_dir), "--out",
                    str(out), "--numerics", "fast", "--no-compile"],
                   cwd=REPO, check=True, capture_output=True)
    execution = json.loads((out / "result.json").read_text())["environment"]["execution"]
    assert execution["numerics"] == "fast" and execution["compiled"] is False
    assert execution["numerics_segments"] == [{"from_step": 0, "numerics": "fast"}]


def test_a_run_resumed_with_other_numerics_is_recorded_as_mixed(synthetic_data_dir, tmp_path):
    run = tmp_path / "run"

    def interrupt_at_the_end(done: int, planned: int) -> None:
        if done == planned:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(small(), run, synthetic_data_dir, show_progress=False,
                  on_progress=interrupt_at_the_end)
    saved = checkpoint_steps(run)[-1]
    assert 0 < saved < 10  # interrupted between checkpoints, as a killed run is

    record = train_run(small(), run, synthetic_data_dir, show_progress=False, options=FAST_EAGER)
    assert record["status"] == "complete"
    execution = record["environment"]["execution"]
    assert execution["numerics"] == "mixed"
    assert execution["numerics_segments"] == [{"from_step": 0, "numerics": "exact"},
                                              {"from_step": saved, "numerics": "fast"}]

    alone = train_run(small(), tmp_path / "alone", synthetic_data_dir, show_progress=False)
    assert alone["environment"]["execution"]["numerics"] == "exact"


def test_numerics_segments_extend_only_on_a_change():
    assert numerics_segments(None, 0, "exact") == [{"from_step": 0, "numerics": "exact"}]
    same = [{"from_step": 0, "numerics": "fast"}]
    assert numerics_segments(same, 40, "fast") == same
    # a checkpoint from before segments were recorded: its steps are not claimed for anything
    assert numerics_segments(None, 40, "fast") == [{"from_step": 0, "numerics": "unrecorded"},
                                                   {"from_step": 40, "numerics": "fast"}]
