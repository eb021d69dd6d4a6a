"""Which runs can train together as one batched ensemble (torch-free, so that a sweep can plan
its groups without loading the trainer).

At the paper's minibatch of 20 one model's step cannot keep a GPU (or even two CPU cores) busy;
M models of the same shape can: every parameter carries a leading member dimension and each
layer is one batched matmul over all members (benchmark.models.network). benchmark.training.loop
trains such a group:

    groups = split_into_groups(configs)                 # indices, by group_key
    records = train_group([configs[i] for i in g], [run_dirs[i] for i in g], data_dir)

Which runs can share a group (group_key): the same number of stochastic layers, the same number of
importance samples per example (k, or M x K for MIWAE and PIWAE), the same fidelity and the same
device setting. Everything else may differ between members: the objective and its estimator (VAE,
IWAE with any estimator, MIWAE, CIWAE, PIWAE, RWS), seed, data condition (each member has its own
training set, epoch length and stage schedule), schedule and cuts (each member stops, is
checkpointed and is evaluated at its own end), evaluation settings, and continuation runs
(--init-from; the parent must be complete before the group starts). Fidelity is part of the key
because the two fidelities use different optimizers, loss reductions and data orders.

What a member gets is what it would get alone: its own generators for noise and binarization,
its own data order, optimizer state, run directory, checkpoints (single-run checkpoints: it can
be resumed alone, or in another group), learning curve and result.json. With the default exact
numerics its parameters match the run trained alone to float rounding (the batched matmuls may
round differently from single ones; on one CPU thread they are bit-identical). A member whose
bound stops being finite fails alone; the others go on. Members that finish or fail leave the
group, which continues with the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmark.config import RunConfig

CHECKPOINT_SECONDS = 300.0


def group_key(config: RunConfig) -> tuple[int, int, str, str]:
    """Runs with equal keys can be trained together: (layers, samples per example, fidelity,
    device). For the paper's VAE and IWAE the samples are k."""
    return (config.layers, config.samples, config.fidelity, config.device)


def split_into_groups(configs: Sequence[RunConfig], max_members: int | None = None
                      ) -> list[list[int]]:
    """Indices of `configs` partitioned by group_key, in order of first appearance, each group
    cut into pieces of at most max_members (None: no limit)."""
    by_key: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        by_key.setdefault(group_key(config), []).append(i)
    groups = []
    for indices in by_key.values():
        size = max_members or len(indices)
        groups.extend(indices[i:i + size] for i in range(0, len(indices), size))
    return groups


def check_group(configs: Sequence[RunConfig]) -> None:
    """Members of a group share benchmark.training.ensemble.group_key."""
    keys = {group_key(c) for c in configs}
    if len(keys) != 1:
        raise ValueError(f"these runs cannot share a group: they must share layers, samples "
                         f"per example, fidelity and device (group_key); got {sorted(keys)}")
