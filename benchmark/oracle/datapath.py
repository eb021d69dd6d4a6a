"""The data path: their datasets.py and the suite's splits on the same files must give the same
train / validation / test arrays, in the same order, and the same decoder bias; their stage
loop the same schedule. Also lays out the folder their config.DATASETS_DIR expects."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from benchmark.data import decoder_bias_mean, load_dataset, raw_dir
from benchmark.models import authors_logit
from benchmark.oracle.cases import AUTHORS_DATASET, DataCase
from benchmark.oracle.compare import BIAS_ULPS, Quantity, ulps_apart
from benchmark.oracle.lockstep import compare_stages, read_result
from benchmark.training import protocol_stages, steps_per_epoch

# their relative path under DATASETS_DIR -> ours under <data dir>/raw, and whether gzipped
AUTHORS_LAYOUT = {
    "MNIST/train-images-idx3-ubyte": ("mnist/train-images-idx3-ubyte.gz", True),
    "MNIST/t10k-images-idx3-ubyte": ("mnist/t10k-images-idx3-ubyte.gz", True),
    "BinaryMNIST/binarized_mnist_train.amat": ("binarized_mnist/binarized_mnist_train.amat",
                                               False),
    "BinaryMNIST/binarized_mnist_valid.amat": ("binarized_mnist/binarized_mnist_valid.amat",
                                               False),
    "BinaryMNIST/binarized_mnist_test.amat": ("binarized_mnist/binarized_mnist_test.amat",
                                              False),
    "OMNIGLOT/chardata.mat": ("omniglot/chardata.mat", False),
}


def authors_data_dir(data_dir: Path, folder: Path) -> Path:
    """Their layout of the suite's verified files: IDX files unzipped, the rest linked."""
    for theirs, (ours, gzipped) in AUTHORS_LAYOUT.items():
        src, dest = raw_dir(data_dir) / ours, folder / theirs
        if not src.exists() or dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if gzipped:
            part = dest.with_name(dest.name + ".part")
            with gzip.open(src, "rb") as fi, open(part, "wb") as fo:
                shutil.copyfileobj(fi, fo)
            part.replace(dest)
        else:
            dest.symlink_to(src.resolve())
    return folder


def prepare(case: DataCase, folder: Path) -> dict[str, list[dict]]:
    folder.mkdir(parents=True, exist_ok=True)
    name = AUTHORS_DATASET[case.data]
    tasks = [{"task": "data", "folder": str(folder), "dataset": name},
             {"task": "schedule", "folder": str(folder / "schedule"), "layers": 1,
              "model": "vae", "k": 1, "dataset": name}]
    (folder / "schedule").mkdir(exist_ok=True)
    return {"float32": tasks, "float64": []}


def compare(case: DataCase, data_dir: Path, folder: Path) -> list[Quantity]:
    ours = load_dataset(case.data, data_dir)
    out = []
    for theirs_name, split in (("train", ours.train), ("validation", ours.valid),
                               ("test", ours.test)):
        theirs = np.load(folder / f"{theirs_name}.npy")
        same = theirs.shape == split.shape and np.array_equal(theirs, split.astype(np.float32))
        out.append(Quantity(case.id, f"{theirs_name} split (bitwise, in order)",
                            0.0 if same else 1.0, 0.0,
                            f"theirs {theirs.shape}, suite {split.shape}"))
    bias = np.load(folder / "bias.npy").reshape(-1)
    suite_bias = authors_logit(decoder_bias_mean(ours.train))
    out.append(Quantity(case.id, "decoder bias (float32 ulps)",
                        float(ulps_apart(suite_bias, bias)), float(BIAS_ULPS),
                        f"{int(np.sum(suite_bias != bias))} of {bias.size} pixels not bitwise "
                        "equal"))
    per_epoch = steps_per_epoch(ours.train.shape[0])
    stages = protocol_stages(per_epoch, continuation=False)
    facts = {"lrs": np.asarray([s.lr for s in stages]),
             "stage_steps": np.asarray([s.steps for s in stages]),
             "per_epoch": np.asarray(per_epoch)}
    schedule = read_result(folder / "schedule")
    out.append(compare_stages(case.id, facts, schedule["stages"], stages[-1].end_step))
    out.append(Quantity(case.id, "steps per epoch", float(
        schedule["n_train"] // 20 != per_epoch), 0.0,
        f"theirs {schedule['n_train']} // 20, suite {per_epoch}"))
    return out
