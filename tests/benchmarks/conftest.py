"""The benchmark suite's fixtures and its closing summary.

Every case times its implementations interleaved, round after round, and keeps each one's best
time: on a machine shared with other work the minimum is the least noisy estimate, and the
baseline is measured in the same minutes as the suite's code. pytest-benchmark times the fast
implementation too (its table); the summary printed at the end holds the ratios.

Data: MNIST from $IWAE_BENCH_DATA_DIR, $IWAE_DATA_DIR or datasets/ when it is there; else fetched
from ../shared/datasets into a temporary folder; else synthetic images in the real file format
(speed hardly depends on the pixels, but flush-to-zero's share does: see the summary's notes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass
class Row:
    case: str
    times_ms: dict[str, float]  # implementation -> best time
    flops: dict[str, float] = field(default_factory=dict)  # implementation -> matmul FLOPs
    floor_ms: float | None = None  # the unavoidable work alone (costs.py): the best possible time
    examples: int | None = None  # AIS: examples per call, reported as examples per second


@dataclass
class EstimatorRow:
    """An estimator's step against the IWAE step it changes, both timed in the same minutes."""

    case: str
    baseline: str  # what it is compared with, e.g. "IWAE k=50"
    times_ms: dict[str, float]  # "iwae exact", "iwae fast", "exact", "fast"


@dataclass
class Recorder:
    peak_gflops: float = 0.0
    data_source: str = ""
    rows: list[Row] = field(default_factory=list)
    estimator_rows: list[EstimatorRow] = field(default_factory=list)


RECORDER = Recorder()


def interleaved_best(fns: dict[str, Callable[[], object]], rounds: int, reps: int,
                     warmup: int = 1) -> dict[str, float]:
    """Best wall time (ms) of each callable over rounds x reps calls, the callables taking
    turns so that a burst of load elsewhere hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


def _mnist_loads(data_dir: Path) -> bool:
    from benchmark.data.splits import load_dataset
    from benchmark.errors import UserError

    try:
        load_dataset("mnist-dynamic", data_dir)
        return True
    except (UserError, OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def bench_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for name in ("IWAE_BENCH_DATA_DIR", "IWAE_DATA_DIR"):
        if os.environ.get(name) and _mnist_loads(Path(os.environ[name])):
            RECORDER.data_source = f"MNIST from ${name}"
            return Path(os.environ[name])
    if _mnist_loads(REPO / "datasets"):
        RECORDER.data_source = "MNIST from datasets/"
        return REPO / "datasets"
    target = tmp_path_factory.mktemp("mnist")
    if (SHARED_DATASETS / "mnist").is_dir():
        subprocess.run([sys.executable, "-m", "benchmark", "fetch", "mnist", "--from",
                        str(SHARED_DATASETS), "--data-dir", str(target)], cwd=REPO, check=True,
                       capture_output=True)
        if _mnist_loads(target):
            RECORDER.data_source = "MNIST fetched from ../shared/datasets"
            return target
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import write_synthetic_raw  # tests/synthetic.py

    data_dir = write_synthetic_raw(target / "synthetic", n_train=2000, n_test=200)
    RECORDER.data_source = "synthetic MNIST-like images (no MNIST found)"
    return data_dir


@pytest.fixture(scope="session")
def matmul_peak() -> float:
    """This machine's float32 matmul rate now: a 2048^3 torch.mm, best of 10."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = interleaved_best({"mm": lambda: torch.mm(a, b)}, rounds=1, reps=10, warmup=2)["mm"]
    RECORDER.peak_gflops = 2 * 2048**3 / (best * 1e-3) / 1e9
    return RECORDER.peak_gflops


@pytest.fixture(scope="session")
def recorder(matmul_peak: float) -> Recorder:
    return RECORDER


def _ratio(base: float | None, t: float | None) -> str:
    return f"{base / t:.2f}x" if base and t else "-"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    rec = RECORDER
    write = terminalreporter.write_line
    if rec.estimator_rows:
        _estimator_summary(write, rec.estimator_rows)
    if not rec.rows:
        return
    write("")
    write(f"IWAE suite performance, {torch.get_num_threads()} threads, "
          f"float32 matmul peak {rec.peak_gflops:.0f} GFLOP/s (torch.mm 2048^3), "
          f"{rec.data_source}")
    write("best times in ms; (x) = plain / this; GFLOP/s = dense-layer FLOPs / time")
    header = (f"{'case':<38}{'plain':>9}{'plain+FTZ':>10}{'exact':>9}{'(x)':>8}"
              f"{'fast':>9}{'(x)':>8}{'fast GFLOP/s':>13}{'% peak':>7}{'floor':>8}{'max (x)':>8}")
    write(header)
    write("-" * len(header))
    for row in rec.rows:
        t = row.times_ms
        plain = t.get("plain")
        fast_flops = row.flops.get("fast")
        gflops = fast_flops / (t["fast"] * 1e-3) / 1e9 if fast_flops and "fast" in t else None
        cells = [f"{row.case:<38}", _fmt(plain, 9), _fmt(t.get("plain+FTZ"), 10),
                 _fmt(t.get("exact"), 9), f"{_ratio(plain, t.get('exact')):>8}",
                 _fmt(t.get("fast"), 9), f"{_ratio(plain, t.get('fast')):>8}",
                 _fmt(gflops, 13, ".0f"),
                 _fmt(100 * gflops / rec.peak_gflops if gflops else None, 7, ".0f"),
                 _fmt(row.floor_ms, 8), f"{_ratio(plain, row.floor_ms):>8}"]
        write("".join(cells))
    for row in (r for r in rec.rows if r.examples):
        rates = ", ".join(f"{name} {row.examples / (ms * 1e-3):.2f}"
                          for name, ms in row.times_ms.items())
        write(f"{row.case}: examples per second: {rates}")
    write("plain: nn.Linear model, x repeated k times through the encoder, torch.optim.Adam, "
          "torch defaults (no flush-to-zero); x12: twelve such models stepped in turn.")
    write("exact/fast: the suite's batched step (benchmark.training.step) with its numerics; both "
          "run with flush-to-zero, as train_run does. Models start at the authors' initialisation.")
    write("floor: the step's dense-layer matmuls alone in the suite's shapes (encode once; "
          "L_5000: forward only), plus for a step Adam's memory traffic (7 arrays of the "
          "parameters' size) at this machine's streaming rate, timed now; max (x) = plain / "
          "floor, the best ratio any implementation of the same model could reach here.")
    write("AIS: exact is the suite's batched AIS (all chains of all examples at once, gradients "
          "kept across transitions); plain is the same algorithm example by example, the energy "
          "gradient recomputed at every leapfrog position (tests/benchmarks/plain_ais.py).")


def _estimator_summary(write: Callable[[str], None], rows: list[EstimatorRow]) -> None:
    write("")
    write(f"Estimators against the IWAE step they change, {torch.get_num_threads()} threads; "
          "best times in ms; (x) = estimator / IWAE (1.00x: as fast as IWAE)")
    header = (f"{'case':<34}{'baseline':<14}{'IWAE exact':>11}{'exact':>9}{'(x)':>8}"
              f"{'IWAE fast':>10}{'fast':>9}{'(x)':>8}")
    write(header)
    write("-" * len(header))
    for row in rows:
        t = row.times_ms
        write(f"{row.case:<34}{row.baseline:<14}{_fmt(t.get('iwae exact'), 11)}"
              f"{_fmt(t.get('exact'), 9)}{_ratio(t.get('exact'), t.get('iwae exact')):>8}"
              f"{_fmt(t.get('iwae fast'), 10)}{_fmt(t.get('fast'), 9)}"
              f"{_ratio(t.get('fast'), t.get('iwae fast')):>8}")
    write("Both sides are the suite's batched step (benchmark.training.step), one model, one "
          "stochastic layer, the same samples per example; DReG adds a hook on the samples' "
          "gradient, PIWAE a second backward pass (its encoder follows MIWAE's gradient).")


def _fmt(value: float | None, width: int, spec: str = ".2f") -> str:
    return f"{value:>{width}{spec}}" if value is not None else " " * (width - 1) + "-"
