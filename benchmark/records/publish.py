"""Copy a sweep's result records into a folder that can be committed or shared: every run's
result.json, config.json, metrics.csv and its evaluations (JSON summaries and per-image .npy),
the per-example test values of its final evaluation, and no checkpoint or stage snapshot (they
are large, and a model file is not a record). Only runs whose record is complete are copied;
each copied file is written atomically, so a folder published twice holds the newest copy."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError
from benchmark.records.fileio import atomic_write_bytes
from benchmark.records.record_schema import EVALUATIONS_DIR, RESULT_FILE
from benchmark.records.results import load_result

RUN_FILES = ("result.json", "config.json", "metrics.csv", "loglik_test.npy",
             "loglik_test_index.npy")
EVALUATION_SUFFIXES = (".json", ".npy")


def published_files(run_dir: Path) -> list[Path]:
    """The files of one run that a published record keeps, relative to the run folder; never a
    symlink, never anything outside the run folder."""
    keep = [Path(name) for name in RUN_FILES if (run_dir / name).is_file()]
    evaluations = run_dir / EVALUATIONS_DIR
    if evaluations.is_dir() and not evaluations.is_symlink():
        for path in sorted(evaluations.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.suffix in EVALUATION_SUFFIXES \
                    and not any(p.is_symlink() for p in path.relative_to(run_dir).parents
                                if p != Path(".")):
                keep.append(path.relative_to(run_dir))
    return [p for p in keep if not (run_dir / p).is_symlink()]


def publish_records(sweep_dir: Path, dest: Path) -> list[str]:
    """Copy every complete run of sweep_dir (a results/<sweep> folder) into dest/<run-id>;
    returns the run ids copied."""
    sweep_dir, dest = Path(sweep_dir), Path(dest)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder of runs (results/<sweep>)")
    copied = []
    for run_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        record = load_result(run_dir)
        if record is None or record.get("status") != "complete":
            continue
        for relpath in published_files(run_dir):
            atomic_write_bytes(dest / run_dir.name / relpath, (run_dir / relpath).read_bytes())
        copied.append(run_dir.name)
    if not copied:
        raise UserError(f"no complete run (status complete in {RESULT_FILE}) under {sweep_dir}")
    return copied
