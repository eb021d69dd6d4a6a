"""The evaluation of a trained run: test and train L_k, active units, pruned L_k, samples.

Which examples are scored, and how they are binarized, is fixed here so that every run of a sweep
is evaluated on the same binary images:
  test   the whole test set, or the seeded random --eval-n subset of it;
  train  the whole training set for an uncut `full` run, else a fixed random subset of
         TRAIN_SUBSET_N examples (the smoke schedule: its eval_n);
  active units  the first 500 training examples, as the authors' code.
Dynamic data is binarized once with TEST_BINARIZATION_SEED for all three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.evaluation.active_units import active_unit_masks, count_active_units, unit_variances
from benchmark.evaluation.inputs import EVAL_NOISE_SEED, EvaluationInputs, evaluation_key
from benchmark.evaluation.likelihood import log_likelihood_estimates, summarise_nll
from benchmark.models import IWAEModel
from benchmark.records import atomic_write
from benchmark.seeding import torch_generator

N_SAMPLES = 64
N_RECONSTRUCTIONS = 32


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array))


def score(model: IWAEModel, x: torch.Tensor, k: int, device: torch.device,
          masks: list[torch.Tensor] | None = None, show_progress: bool = False) -> np.ndarray:
    """Per-example L_k of member 0 with the evaluation's fixed noise seed. x: (N, 784)."""
    noise = torch_generator(EVAL_NOISE_SEED, device)
    return log_likelihood_estimates(model, x[None].to(device), k, noise, unit_masks=masks,
                                    show_progress=show_progress)[0]


def fresh_generators(members: int, device: torch.device) -> list[torch.Generator]:
    """Every member's evaluation noise starts from the same seed, as in a run of its own."""
    return [torch_generator(EVAL_NOISE_SEED, device) for _ in range(members)]


def score_members(model: IWAEModel, x: torch.Tensor, k: int, device: torch.device,
                  masks: list[torch.Tensor] | None = None, show_progress: bool = False,
                  fast: bool = False) -> np.ndarray:
    """Per-example L_k of every member on the same examples x (N, 784): (M, N)."""
    members = model.members
    xs = x.to(device).unsqueeze(0).expand(members, -1, -1)
    return log_likelihood_estimates(model, xs, k, fresh_generators(members, device),
                                    unit_masks=masks, show_progress=show_progress, fast=fast)


@torch.no_grad()
def evaluate_final(model: IWAEModel, inputs: EvaluationInputs, config: RunConfig,
                   device: torch.device, run_dir: Path, show_progress: bool = True
                   ) -> tuple[dict, dict]:
    """All metrics of the result record, and the artifacts written beside it."""
    return evaluate_members(model, inputs, [config], device, [run_dir], show_progress)[0]


@torch.no_grad()
def evaluate_members(model: IWAEModel, inputs: EvaluationInputs, configs: list[RunConfig],
                     device: torch.device, run_dirs: list[Path], show_progress: bool = True,
                     fast: bool = False) -> list[tuple[dict, dict]]:
    """Metrics and artifacts of every member of `model`, all scored together on the same
    inputs (their configs share evaluation_key). Each member's numbers are those it would get
    evaluated alone: its own noise generators, all seeded EVAL_NOISE_SEED."""
    members = model.members
    if len(configs) != members or len(run_dirs) != members:
        raise ValueError("one config and one run directory per member")
    if len({evaluation_key(c) for c in configs}) != 1:
        raise ValueError("members evaluated together must share their evaluation inputs")
    k = configs[0].effective_eval_k
    test_x = inputs.test[inputs.test_index]
    test_ll = score_members(model, test_x, k, device, show_progress=show_progress, fast=fast)
    train_ll = score_members(model, inputs.train, k, device, show_progress=show_progress,
                             fast=fast)
    active_x = inputs.active_units.to(device).unsqueeze(0).expand(members, -1, -1)
    variances = unit_variances(model, active_x, fresh_generators(members, device))
    active = count_active_units(variances)
    pruned_ll = score_members(model, test_x, k, device, masks=active_unit_masks(variances),
                              show_progress=show_progress, fast=fast)
    samples = model.sample_images(N_SAMPLES, fresh_generators(members, device))
    originals = test_x[:N_RECONSTRUCTIONS]
    recon = model.reconstruct(originals.to(device).unsqueeze(0).expand(members, -1, -1)
                              .contiguous())
    samples, recon = samples.float().cpu().numpy(), recon.float().cpu().numpy()

    results = []
    for i, run_dir in enumerate(run_dirs):
        test, train = summarise_nll(test_ll[i]), summarise_nll(train_ll[i])
        pruned = summarise_nll(pruned_ll[i])
        save_npy(run_dir / "loglik_test.npy", test_ll[i])
        save_npy(run_dir / "loglik_test_index.npy", inputs.test_index)
        save_npy(run_dir / "samples.npy", samples[i])
        save_npy(run_dir / "reconstructions.npy", np.stack([originals.numpy(), recon[i]]))
        metrics = {
            "test_nll": test.nll, "test_nll_se": test.se,
            "train_nll": train.nll, "train_nll_se": train.se, "train_eval_n": train.n,
            "active_units": [int(n[i]) for n in active],
            "unit_variances": [v[i].tolist() for v in variances],
            "test_nll_pruned": pruned.nll,
            "eval_k": k, "eval_n": test.n,
        }
        artifacts = {"test_loglik": "loglik_test.npy", "test_index": "loglik_test_index.npy",
                     "samples": "samples.npy", "reconstructions": "reconstructions.npy"}
        results.append((metrics, artifacts))
    return results
