"""Training several runs as one batched ensemble: the sweep's entry point.

At the paper's minibatch of 20 one model's step cannot keep a GPU (or even two CPU cores) busy;
M models of the same shape can: every parameter carries a leading member dimension and each
layer is one batched matmul over all members (benchmark.models.network).

    from benchmark.training.ensemble import group_key, train_group
    groups = split_into_groups(configs)                 # indices, by group_key
    records = train_group([configs[i] for i in g], [run_dirs[i] for i in g], data_dir)

Which runs can share a group (group_key): the same number of stochastic layers, the same k, the
same fidelity and the same device setting. Everything else may differ between members: VAE or
IWAE, seed, data condition (each member has its own training set, epoch length and stage
schedule), schedule and cuts (each member stops, is checkpointed and is evaluated at its own
end), evaluation settings, and continuation runs (--init-from; the parent must be complete before
the group starts). Fidelity is part of the key because the two fidelities use different
optimizers, loss reductions and data orders.

What a member gets is what it would get alone: its own generators for noise and binarization,
its own data order, optimizer state, run directory, checkpoints (single-run checkpoints: it can
be resumed alone, or in another group), learning curve and result.json. With the default exact
numerics its parameters match the run trained alone to float rounding (the batched matmuls may
round differently from single ones; on one CPU thread they are bit-identical). A member whose
bound stops being finite fails alone; the others go on. Members that finish or fail leave the
group, which continues with the rest.

This module imports torch only when training, so a sweep driver can call group_key freely.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.training.execution import ExecutionOptions

GroupProgressCallback = Callable[[int, int, int], None]  # (member index, steps done, planned)
CHECKPOINT_SECONDS = 300.0


def group_key(config: RunConfig) -> tuple[int, int, str, str]:
    """Runs with equal keys can be trained together: (layers, k, fidelity, device)."""
    return (config.layers, config.k, config.fidelity, config.device)


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


def train_group(
    configs: Sequence[RunConfig],
    run_dirs: Sequence[Path],
    data_dir: Path,
    *,
    run_ids: Sequence[str | None] | None = None,
    sweep: str | None = None,
    show_progress: bool = True,
    on_progress: GroupProgressCallback | None = None,
    checkpoint_every_s: float = CHECKPOINT_SECONDS,
    options: ExecutionOptions | None = None,
) -> list[dict]:
    """Train and evaluate the runs `configs` (one group_key) together, each in its run_dir, and
    return their result records in the same order (what train_run returns for each).

    on_progress(i, done, planned) reports member i's steps at every host check. A member already
    complete is returned as recorded, untrained. Every member is set up before anything trains,
    so a UserError (a run directory holding another configuration, a continuation whose parent
    is not complete) is raised before any work is done. options: how the group executes
    (benchmark.training.execution: numerics "exact" by default or "fast"; CUDA graphs; TF32).
    """
    from benchmark.training.loop import train_members  # checks the group before any work

    return train_members(configs, [Path(d) for d in run_dirs], Path(data_dir), run_ids=run_ids,
                         sweep=sweep, show_progress=show_progress, on_progress=on_progress,
                         checkpoint_every_s=checkpoint_every_s, options=options)
