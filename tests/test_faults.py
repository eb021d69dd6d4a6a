"""Faults a run directory and a results folder meet: leftovers of another run, corrupted or cut
checkpoints and records, a full or read-only disk, a file where a folder belongs, non-finite
numbers on the command line or in the parameters, a run trained by another process."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import benchmark.records.checkpoint as checkpoint_module
import benchmark.training.loop as loop_module
from benchmark.cli import build_parser, main
from benchmark.config import RunConfig
from benchmark.errors import UserError, filesystem_error_line
from benchmark.records.checkpoint import (
    checkpoint_steps,
    load_latest_checkpoint,
    save_checkpoint,
)
from benchmark.records.results import load_result
from benchmark.records.training_lock import TrainingLock, is_being_trained
from benchmark.training.loop import train_run

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw) -> RunConfig:
    """5 steps (one epoch of the 100 synthetic training images), evaluated on 10 with k=5."""
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 2, "layers": 1, "epochs": 1,
            "eval_k": 5, "eval_n": 10}
    return RunConfig(**{**base, **kw})


def train_argv(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", "mnist-dynamic", "--model", "iwae", "--k", "2", "--layers", "1",
            "--epochs", "2", "--eval-k", "5", "--eval-n", "10", "--data-dir", str(data_dir),
            "--out", str(out), "--checkpoint-every", "0.001", *extra]


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not progress bars (tqdm redraws with carriage returns)."""
    return [line for line in stderr.replace("\r", "\n").splitlines()
            if line.strip() and "|" not in line]


# --- leftovers of another run in --out (issue 16 point 2) --------------------------------------

def test_a_record_of_another_run_in_out_is_refused(synthetic_data_dir, tmp_path):
    other = tiny(model="vae", k=5)
    out = tmp_path / "run"
    out.mkdir()
    record = {"run_id": "other", "config": other.to_dict(), "status": "complete",
              "progress": {"steps": 5}, "metrics": {"test_nll": 123.0}}
    (out / "result.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"result.json belongs to another run \(model: 'vae' -> "
                                        r"'iwae'; k: 5 -> 2"):
        train_run(tiny(), out, synthetic_data_dir, show_progress=False)
    assert json.loads((out / "result.json").read_text()) == record  # left as it was


def test_checkpoints_of_another_run_in_out_are_refused(synthetic_data_dir, tmp_path):
    train_run(tiny(k=3), tmp_path / "other", synthetic_data_dir, show_progress=False)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(tmp_path / "other" / "checkpoints", out / "checkpoints")
    with pytest.raises(UserError, match=r"checkpoints belongs to another run \(k: 3 -> 2"):
        train_run(tiny(), out, synthetic_data_dir, show_progress=False)
    assert not (out / "result.json").exists()


def test_a_corrupt_config_json_is_one_error(synthetic_data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"data": "mnist-dyn')
    with pytest.raises(UserError, match="config.json is not a readable run configuration"):
        train_run(tiny(), out, synthetic_data_dir, show_progress=False)


def test_the_same_run_in_out_is_resumed_not_refused(synthetic_data_dir, tmp_path):
    # The record's eval_k/eval_n are the effective values (the smoke schedule's defaults here),
    # the asked-for config has None: the same run, which must not be refused.
    config = RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=1, schedule="smoke",
                       steps=3, eval_n=10)
    first = train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    assert first["config"]["eval_k"] == 100 and first["status"] == "complete"
    assert train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False) == first


# --- unreadable records (point 5) ----------------------------------------------------------------

@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[1, 2]", b'"a string"', b""])
def test_every_unreadable_record_reads_as_none(tmp_path, content):
    (tmp_path / "result.json").write_bytes(content)
    assert load_result(tmp_path) is None


def test_a_folder_named_result_json_reads_as_none(tmp_path):
    (tmp_path / "result.json").mkdir()
    assert load_result(tmp_path) is None


def test_report_lists_records_that_are_not_utf8_or_not_objects(tmp_path):
    from report_fixtures import SPECS, build_results_tree

    from benchmark.report.build import build_report

    results = build_results_tree(tmp_path, SPECS[:2])
    for name, content in (("bytes", b"\xff\xfe"), ("array", b"[1, 2]")):
        run_dir = results / "table1" / name
        run_dir.mkdir(parents=True)
        (run_dir / "result.json").write_bytes(content)
    html = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "table1/bytes" in html and "table1/array" in html
    assert "a JSON list, not a record" in html


# --- non-finite numbers on the command line (point 7) ------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_numbers_are_rejected_by_the_parser(value, capsys):
    parser = build_parser()
    for argv in (["train", "--data", "mnist-dynamic", "--model", "iwae", "--k", "1",
                  "--layers", "1", f"--epochs={value}"],
                 ["train", "--data", "mnist-dynamic", "--model", "iwae", "--k", "1",
                  "--layers", "1", f"--checkpoint-every={value}"],
                 ["sweep", "table1", f"--epochs={value}"],
                 ["sweep", "table1", "--executor", "ray", f"--gpus-per-run={value}"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2
        assert "finite" in capsys.readouterr().err


def test_a_non_finite_epoch_count_is_not_a_run():
    with pytest.raises(UserError, match="--epochs must be a positive finite number"):
        RunConfig(data="mnist-dynamic", model="iwae", k=1, layers=1, epochs=float("inf"))


def test_a_sweep_with_infinite_epochs_creates_no_folders(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "table1", "--epochs", "inf", "--results", str(tmp_path / "results")])
    assert not (tmp_path / "results").exists()


# --- file-system faults (point 6) ----------------------------------------------------------------

def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    code = main(train_argv(tmp_path / "no-data", tmp_path / "afile"))
    assert code == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'afile'} is a file, not a run folder; choose another --out"]


def test_results_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    code = main(["sweep", "table1", "--schedule", "smoke", "--results", str(tmp_path / "afile")])
    assert code == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: --results {tmp_path / 'afile'} is a file, not a folder; choose a folder"]


def test_a_folder_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    code = main(train_argv(tmp_path / "no-data", tmp_path / "afile" / "run"))
    assert code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "Not a directory" in lines[0] and "afile" in lines[0]


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_rerun_resumes(
        synthetic_data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_write = checkpoint_module.atomic_write_bytes
    writes = {"n": 0}

    def disk_fills_up(path, data):
        writes["n"] += 1
        if writes["n"] == 3:  # the third checkpoint: two are on disk, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", disk_fills_up)
    assert main(train_argv(synthetic_data_dir, out)) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: No space left on device: "), lines
    assert "free some space" in lines[0] and "resumes from its last checkpoint" in lines[0]
    # 10 steps, checkpointed at every log point (1, 2, 4, 5, 9, 10): the one of step 4 failed
    kept = checkpoint_steps(out)
    assert kept == [2, 1]
    record = load_result(out)
    assert record["status"] == "failed" and record["failure"]["step"] == 4
    assert "could not write" in record["reason"] and "No space left" in record["reason"]

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", real_write)
    assert main(train_argv(synthetic_data_dir, out)) == 0
    record = load_result(out)
    assert record["status"] == "complete" and record["progress"]["resumed_from"] == [kept[0]]


def test_filesystem_errors_name_the_path_and_the_fix():
    line = filesystem_error_line(OSError(errno.EROFS, "Read-only file system", "/r/x"))
    assert line == ("Read-only file system: /r/x; that file system is read-only: choose a "
                    "writable --results / --out")
    assert "free some space" in filesystem_error_line(
        OSError(errno.ENOSPC, "No space left on device", "/r/y"))
    assert filesystem_error_line(OSError(errno.ECONNREFUSED, "refused")) is None


def test_a_read_only_results_folder_during_a_sweep_is_one_line(tmp_path, monkeypatch, capsys):
    import benchmark.sweeps.grid_sweep as grid_sweep

    target = tmp_path / "results" / "table1" / "run" / ".sweep.lock"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(grid_sweep, "run_sweep", read_only)
    code = main(["sweep", "table1", "--schedule", "smoke", "--data", "mnist-dynamic",
                 "--results", str(tmp_path / "results"), "--data-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert error_lines(err)[-1] == (f"error: Read-only file system: {target}; that file system "
                                    "is read-only: choose a writable --results / --out")


def test_unselected_unavailable_runs_need_no_write_access(tmp_path, monkeypatch, capsys):
    """A sweep of complete runs in a read-only results folder: recording the grid's other,
    unavailable data conditions is a note for the report, never a reason to fail."""
    import benchmark.sweeps.availability as availability
    import benchmark.sweeps.run_state as run_state
    from benchmark.sweeps.grids import SweepOptions, expand_grid

    options = SweepOptions(schedule="smoke", data=("mnist-dynamic",))
    plan = expand_grid("table1", options, tmp_path)
    missing = lambda name, data_dir: None if name == "mnist-dynamic" else "no files"  # noqa: E731
    availability.record_unselected_unavailable("table1", options, plan, tmp_path, tmp_path,
                                               check_data=missing)
    omniglot = tmp_path / "table1" / "omniglot_vae_k1_L1_s0_code_smoke"
    assert load_result(omniglot)["status"] == "unavailable"
    before = (omniglot / "result.json").stat().st_mtime_ns

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(omniglot))

    # Already recorded with the same reason: nothing is written again.
    monkeypatch.setattr(run_state, "write_result", read_only)
    availability.record_unselected_unavailable("table1", options, plan, tmp_path, tmp_path,
                                               check_data=missing)
    assert (omniglot / "result.json").stat().st_mtime_ns == before
    # Another reason, and a folder that cannot be written: a warning, not a failure.
    availability.record_unselected_unavailable("table1", options, plan, tmp_path, tmp_path,
                                               check_data=lambda n, d: None if n ==
                                               "mnist-dynamic" else "still no files")
    assert "warning: could not record them (Read-only file system" in capsys.readouterr().err


# --- checkpoints: fall back, verify, keep the previous one, clean temporaries (8, issue 12.7) ---

def payload(step: int) -> dict:
    return {"step": step, "config": tiny().to_dict(), "weights": torch.full((3,), float(step))}


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_previous_verified_checkpoint_is_kept_beside_the_newest(tmp_path):
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, payload(step))
    assert checkpoint_steps(tmp_path) == [15, 10]


def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    for step in (5, 10):
        save_checkpoint(tmp_path, payload(step))
    corrupt(tmp_path / "checkpoints" / "step-0000000010.pt")
    loaded = load_latest_checkpoint(tmp_path)
    assert loaded["step"] == 5 and torch.equal(loaded["weights"], torch.full((3,), 5.0))
    warning = capsys.readouterr().err
    assert "step 10" in warning and "corrupted" in warning and "interrupted write" not in warning


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    for step in (5, 10):
        save_checkpoint(tmp_path, payload(step))
    newest = tmp_path / "checkpoints" / "step-0000000010.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    assert load_latest_checkpoint(tmp_path)["step"] == 5


def test_no_checkpoint_that_verifies_is_one_error_that_says_what_to_do(tmp_path):
    for step in (5, 10):
        save_checkpoint(tmp_path, payload(step))
    for path in (tmp_path / "checkpoints").glob("*.pt"):
        corrupt(path)
    with pytest.raises(UserError, match=r"none of the 2 checkpoint\(s\) in .*checkpoints matches "
                                        r"its checksum; delete .*checkpoints to train this run "
                                        r"again from step 0"):
        load_latest_checkpoint(tmp_path)


def test_re_evaluating_a_complete_run_without_a_good_checkpoint_keeps_its_record(
        synthetic_data_dir, tmp_path, capsys):
    train_run(tiny(), tmp_path / "run", synthetic_data_dir, show_progress=False)
    record = (tmp_path / "run" / "result.json").read_bytes()
    for path in (tmp_path / "run" / "checkpoints").glob("*.pt"):
        corrupt(path)
    code = main(["evaluate", str(tmp_path / "run"), "--k", "2", "--n", "4",
                 "--data-dir", str(synthetic_data_dir)])
    assert code == 2
    line = error_lines(capsys.readouterr().err)[-1]
    assert "recorded results stand" in line and "delete" not in line
    assert (tmp_path / "run" / "result.json").read_bytes() == record


def test_a_saved_step_is_never_rewritten(tmp_path):
    save_checkpoint(tmp_path, payload(5))
    path = tmp_path / "checkpoints" / "step-0000000005.pt"
    before = path.stat()
    save_checkpoint(tmp_path, {**payload(5), "weights": torch.zeros(3)})
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert torch.equal(load_latest_checkpoint(tmp_path)["weights"], torch.full((3,), 5.0))


def test_older_checkpoints_are_removed_only_after_the_new_one_verifies(tmp_path, monkeypatch):
    for step in (5, 10):
        save_checkpoint(tmp_path, payload(step))
    real_write = checkpoint_module.atomic_write_bytes

    def bad_storage(path, data):  # what reaches the disk is not what was written
        real_write(path, data[: len(data) // 2])

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", bad_storage)
    with pytest.raises(OSError, match="does not read back as written") as error:
        save_checkpoint(tmp_path, payload(15))
    assert error.value.errno == errno.EIO
    assert checkpoint_steps(tmp_path) == [10, 5]
    assert load_latest_checkpoint(tmp_path)["step"] == 10


def test_temporaries_of_a_killed_checkpoint_write_are_removed_on_resume(synthetic_data_dir,
                                                                        tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stale = [out / "checkpoints" / ".step-0000000003.pt.k1ll3d.tmp",
             out / ".result.json.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    train_run(tiny(), out, synthetic_data_dir, show_progress=False)
    assert not any(path.exists() for path in stale)
    assert not list(out.rglob("*.tmp"))


# --- parameters checked before every checkpoint (point 9) ---------------------------------------

def test_a_parameter_made_non_finite_is_never_checkpointed(synthetic_data_dir, tmp_path,
                                                           monkeypatch):
    real_make_step = loop_module._make_step

    def poisoning_make_step(state, members, options):
        step = real_make_step(state, members, options)

        def poisoned(steps):
            out = step(steps)
            if steps[0] == 3:  # the update of the 4th step; its bound was computed before it
                with torch.no_grad():
                    dict(state.model.named_parameters())["likelihood.logits.weight"].view(-1)[7] = (
                        float("inf"))
            return out

        return poisoned

    monkeypatch.setattr(loop_module, "_make_step", poisoning_make_step)
    record = train_run(tiny(epochs=2), tmp_path / "run", synthetic_data_dir, show_progress=False,
                       checkpoint_every_s=0.0)
    assert record["status"] == "failed"
    assert record["failure"]["step"] == 4
    assert "non-finite parameter likelihood.logits.weight after step 4" in record["reason"]
    saved = load_latest_checkpoint(tmp_path / "run")
    assert saved["step"] == 2  # the log points of the first epoch are steps 1, 2, 4 and 5
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


# --- the training lock (point 1) ------------------------------------------------------------------

HOLD_TRAINING_LOCK = """
import sys, time
from pathlib import Path
from benchmark.records.training_lock import TrainingLock
lock = TrainingLock(Path(sys.argv[1]))
assert lock.acquire()
print("held", flush=True)
sys.stdin.readline()  # until the test closes our stdin
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Start a process that holds a run directory's training lock until the test ends."""
    holders = []

    def start(run_dir: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_TRAINING_LOCK, str(run_dir)],
                                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "held"
        holders.append(proc)
        return proc

    yield start
    for proc in holders:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_run_that_another_process_trains_is_refused(synthetic_data_dir, tmp_path, lock_holder):
    holder = lock_holder(tmp_path / "run")
    assert is_being_trained(tmp_path / "run")
    with pytest.raises(UserError, match=f"being trained by process {holder.pid} right now"):
        train_run(tiny(), tmp_path / "run", synthetic_data_dir, show_progress=False)
    assert not (tmp_path / "run" / "result.json").exists()


def test_the_training_lock_ends_with_its_process(tmp_path, lock_holder):
    holder = lock_holder(tmp_path / "run")
    holder.kill()
    holder.wait()
    assert not is_being_trained(tmp_path / "run")
    lock = TrainingLock(tmp_path / "run")
    assert lock.acquire()
    assert lock.holder_pid() == os.getpid()
    lock.release()


def test_a_stale_sweep_lock_is_not_taken_while_its_run_is_trained(tmp_path, lock_holder):
    from test_sweep import dead_pid, write_lock

    from benchmark.sweeps.locks import RunDirLock

    run_dir = tmp_path / "run"
    write_lock(run_dir, dead_pid())  # the sweep that took it was SIGKILLed ...
    holder = lock_holder(run_dir)  # ... and its worker goes on training
    lock = RunDirLock(run_dir)
    assert not lock.acquire()
    assert f"being trained by process {holder.pid}" in lock.describe_holder()
    holder.stdin.close()
    holder.wait(timeout=30)
    assert lock.acquire()
    lock.release()


def test_a_run_trained_without_a_sweep_lock_is_not_taken_either(tmp_path, lock_holder):
    from benchmark.sweeps.locks import LOCK_FILE, RunDirLock

    lock_holder(tmp_path / "run")  # e.g. `train --out` into a sweep's run directory
    lock = RunDirLock(tmp_path / "run")
    assert not lock.acquire()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_progress_in_the_record_follows_every_checkpoint(synthetic_data_dir, tmp_path,
                                                         monkeypatch):
    """After a kill, the record says how far the checkpoint a resume starts from got."""
    seen: list[tuple[int, int | None]] = []
    real_save = loop_module.save_checkpoint

    def save_and_note(run_dir, data):
        real_save(run_dir, data)
        seen.append((data["step"], None))

    real_write = loop_module.write_result

    def write_and_note(run_dir, record):
        real_write(run_dir, record)
        if seen and seen[-1][1] is None:
            seen[-1] = (seen[-1][0], load_result(run_dir)["progress"]["steps"])

    monkeypatch.setattr(loop_module, "save_checkpoint", save_and_note)
    monkeypatch.setattr(loop_module, "write_result", write_and_note)
    train_run(tiny(epochs=2), tmp_path / "run", synthetic_data_dir, show_progress=False,
              checkpoint_every_s=0.0)
    assert seen and all(step == recorded for step, recorded in seen), seen
