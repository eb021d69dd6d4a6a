"""The training loop: one run, or a group of runs trained as one batched computation.

`train_run` trains one run (resuming from the run directory's newest checkpoint when there is
one), evaluates it, and writes result.json: "running" while it trains, then "complete", or
"failed" with the step and the reason when the training bound stops being finite.
`train_group` is the same for several runs that share benchmark.training.ensemble.group_key;
a single run is a group of one. Every member keeps its own run directory, checkpoints, curves
and record, exactly those of the run trained alone, and stops, is checkpointed and is evaluated
at its own end. A member whose bound stops being finite fails alone: members share no
parameters, so its NaNs reach nobody else.

The loop never synchronises with the host inside a step; it checks the bounds every CHECK_EVERY
steps, at log points and before every checkpoint, so a checkpoint is only ever written from
finite state.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.evaluation import evaluate_members, fresh_generators, log_likelihood_estimates
from benchmark.models import bound, check_plugin_objectives, objective_of
from benchmark.records import (
    CurveRow,
    TrainingLock,
    load_result,
    remove_temporaries,
    resolve_device,
    save_checkpoint,
    save_stage_snapshot,
    write_curves,
    write_result,
)
from benchmark.training.denormals import flush_denormals
from benchmark.training.ensemble import CHECKPOINT_SECONDS, check_group
from benchmark.training.execution import ExecutionOptions
from benchmark.training.group import Member, StackedState
from benchmark.training.optim import loss_reduction
from benchmark.training.run_record import run_record
from benchmark.training.run_setup import (
    DataCache,
    check_run_dir,
    new_member,
    record_numerics,
    resume_member,
)
from benchmark.training.step import StepSpec, matmul_precision
from benchmark.training.step_check import choose_step, record_step_path

CHECK_EVERY = 100  # steps between host synchronisations (finiteness, progress bar)
CURVE_SUBSET_K = 50

ProgressCallback = Callable[[int, int], None]  # (steps done, steps planned) of one run
MemberProgressCallback = Callable[[int, int, int], None]  # (member index, done, planned)


def train_run(
    config: RunConfig,
    run_dir: Path,
    data_dir: Path,
    *,
    run_id: str | None = None,
    sweep: str | None = None,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
    checkpoint_every_s: float = CHECKPOINT_SECONDS,
    options: ExecutionOptions | None = None,
) -> dict:
    """Train and evaluate one run in run_dir; return its result record (schema:
    benchmark.records.results)."""
    callback = None if on_progress is None else (
        lambda _member, done, planned: on_progress(done, planned))
    return train_group([config], [Path(run_dir)], Path(data_dir), run_ids=[run_id],
                       sweep=sweep, show_progress=show_progress, on_progress=callback,
                       checkpoint_every_s=checkpoint_every_s, options=options)[0]


def train_group(
    configs: Sequence[RunConfig],
    run_dirs: Sequence[Path],
    data_dir: Path,
    *,
    run_ids: Sequence[str | None] | None = None,
    sweep: str | None = None,
    show_progress: bool = True,
    on_progress: MemberProgressCallback | None = None,
    checkpoint_every_s: float = CHECKPOINT_SECONDS,
    options: ExecutionOptions | None = None,
) -> list[dict]:
    """Train and evaluate the runs `configs` (one group_key) together, each in its run_dir, and
    return their result records in the same order (what train_run returns for each).

    on_progress(i, done, planned) reports member i's steps at every host check. A member already
    complete is returned as recorded, untrained. Every member is set up before anything trains,
    so a UserError (a run directory holding another configuration, a continuation whose parent
    is not complete) is raised before any work is done. options: how the group executes
    (benchmark.training.execution: numerics "exact" by default or "fast"; CUDA graphs; TF32)."""
    if len(configs) != len(run_dirs) or not configs:
        raise ValueError("one run directory per configuration, and at least one")
    run_ids = list(run_ids) if run_ids is not None else [None] * len(configs)
    options = options or ExecutionOptions()
    check_group(configs)
    check_plugin_objectives(configs)
    device = resolve_device(configs[0].device)
    data = DataCache(Path(data_dir), device)
    records: list[dict | None] = [None] * len(configs)
    members, positions = [], []
    with ExitStack() as stack:
        for i, (config, run_dir, rid) in enumerate(zip(configs, run_dirs, run_ids, strict=True)):
            run_dir = Path(run_dir)
            stack.enter_context(training_lock(run_dir))
            check_run_dir(run_dir, config)
            existing = load_result(run_dir)
            if existing is not None and existing.get("status") == "complete":
                records[i] = existing
                continue
            remove_temporaries(run_dir)
            members.append(new_member(config, run_dir, rid, sweep, data, device, options,
                                      len(configs)))
            positions.append(i)
        if members:
            state = StackedState.fresh(members, device, fused=options.numerics == "fast",
                                       compile_cpu=options.compile_cpu)
            for j, member in enumerate(members):
                resume_member(state, j, member, device, single=len(members) == 1)
                record_numerics(member, options.numerics)
            threads = fix_thread_count(members)
            if show_progress:
                announce_resumes(members)
            stack.enter_context(torch_threads(threads))
            stack.enter_context(flush_denormals(options.flush_denormal and device.type == "cpu"))
            stack.enter_context(matmul_precision(options.allow_tf32))
            try:
                finished = _train_loop(state, members, show_progress, on_progress,
                                       checkpoint_every_s, options)
            except OSError as err:
                record_write_failure(members, err)
                raise
            for j, record in finished.items():
                records[positions[j]] = record
    assert all(record is not None for record in records)
    return records  # type: ignore[return-value]


@contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold run_dir's training lock (benchmark.records.training_lock) for the block; a run
    directory that another process is training is refused before anything is done."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run folder; choose another --out")
    lock = TrainingLock(run_dir)
    if not lock.acquire():
        pid = lock.holder_pid()
        who = f"process {pid}" if pid else "another process"
        raise UserError(f"{run_dir} is being trained by {who} right now; wait for it to finish "
                        "or stop it, then run this again")
    try:
        yield
    finally:
        lock.release()


def fix_thread_count(members: list[Member]) -> int:
    """The torch thread count of the group: the one its resumed members were started with (a
    run keeps one for its life: matmuls on another number of threads round differently, and a
    resume would no longer be bit-identical), else this process's. Recorded on every member."""
    recorded = sorted({m.threads for m in members if m.threads is not None})
    if len(recorded) > 1:
        raise UserError(f"these runs were started with different thread counts ({recorded}); "
                        "train them in separate groups")
    threads = recorded[0] if recorded else torch.get_num_threads()
    for member in members:
        member.threads = threads
        member.common["env"]["execution"]["threads"] = threads
    return threads


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def announce_resumes(members: list[Member]) -> None:
    for member in members:
        if member.resumed_from:
            print(f"{member.run_dir}: resuming from its checkpoint of step {member.step} of "
                  f"{member.plan.planned_steps} ({member.threads} thread(s), as it started)",
                  file=sys.stderr, flush=True)


def record_write_failure(members: list[Member], err: OSError) -> None:
    """After a failed write (a full disk, a read-only folder), say so in each unfinished member's
    record if the record can still be written; the next call resumes from the last checkpoint
    either way (a record left "running" says the same)."""
    for member in members:
        if member.record is not None:
            continue
        reason = (f"could not write {err.filename or 'a file'} ({err.strerror or err}) at step "
                  f"{member.step}; the last checkpoint is kept and the same command resumes "
                  "from it")
        failure = {"step": member.step, "epoch": member.step / member.plan.steps_per_epoch,
                   "reason": reason}
        try:
            write_result(member.run_dir, _record(member, "failed", failure=failure))
        except OSError:
            pass  # the record keeps its last state: "running" at the last checkpoint


def _make_step(state: StackedState, members: list[Member], options: ExecutionOptions
               ) -> Callable[[Sequence[int]], torch.Tensor]:
    """The group's step: on a GPU the CUDA-graph step once it has proved itself on a copy of the
    group (benchmark.training.step_check), else eager; the choice goes into every record."""
    configs = [m.config for m in members]
    spec = StepSpec(k=configs[0].samples, reduction=loss_reduction(configs[0].fidelity),
                    objectives=tuple(objective_of(c) for c in configs), numerics=options.numerics)
    step, choice = choose_step(state, members, spec, bound,  # `bound` read here: tests replace it
                               options)
    record_step_path(members, choice)
    return step


def _train_loop(state: StackedState, members: list[Member], show_progress: bool,
                on_progress: MemberProgressCallback | None, checkpoint_every_s: float,
                options: ExecutionOptions) -> dict[int, dict]:
    """Train every member to its planned end. Returns {member index: final record}."""
    records: dict[int, dict] = {}
    active = list(range(len(members)))
    now = time.monotonic()
    for member in members:
        member.last_checkpoint = now
        write_result(member.run_dir, _record(member, "running"))
    done_already = [j for j in active if members[j].done]
    if done_already:  # resumed after the last step: only the evaluation is missing
        records.update(_finish(state, members, active, done_already, show_progress, options))
        state, active = _without(state, active, done_already)
    if not active:
        return records

    bar = tqdm(total=sum(m.plan.planned_steps for m in members),
               initial=sum(m.step for m in members), unit="step", leave=False,
               desc=_bar_label(members), disable=not show_progress, smoothing=0.05)
    try:
        while active:
            group = [members[j] for j in active]
            step = _make_step(state, group, options)
            leaving = _train_until_members_leave(state, group, step, bar, on_progress, active,
                                                 checkpoint_every_s, options, records, members,
                                                 show_progress)
            state, active = _without(state, active, leaving)
    finally:
        bar.close()
    return records


def _train_until_members_leave(state: StackedState, group: list[Member], step: Callable,
                               bar: tqdm, on_progress: MemberProgressCallback | None,
                               active: list[int], checkpoint_every_s: float,
                               options: ExecutionOptions, records: dict[int, dict],
                               members: list[Member], show_progress: bool) -> list[int]:
    """Step the group until a check where some members fail or finish; returns their indices
    (into `members`), with their final records written and stored in `records`."""
    device = next(state.model.parameters()).device
    bounds = torch.empty(CHECK_EVERY, len(group), device=device)  # (steps, M) mean bounds
    pending, current_lrs = 0, None
    segment = time.perf_counter()
    while True:
        lrs = [m.plan.stage_at(m.step).lr for m in group]
        if lrs != current_lrs:
            state.optimizer.set_learning_rates(lrs)
            current_lrs = lrs
        per_example = step([m.step for m in group])  # (M, B)
        bounds[pending] = per_example.mean(dim=-1)
        pending += 1
        for member in group:
            member.step += 1
        if not (pending == CHECK_EVERY or any(_at_mark(m) for m in group)):
            continue

        values = bounds[:pending].cpu().numpy()  # the one host sync per CHECK_EVERY steps
        elapsed = time.perf_counter() - segment
        leaving = []
        for j, member in enumerate(group):
            member.train_seconds += elapsed  # a group's members share its wall time
            failure = _failure(member, values[:, j], pending)
            if failure is not None:
                records[active[j]] = _final_record(member, "failed", failure=failure)
                leaving.append(j)
                continue
            member.bound_sum += float(values[:, j].sum())
            member.bound_count += pending
            if on_progress is not None:
                on_progress(active[j], member.step, member.plan.planned_steps)
        bar.update(pending * len(group))
        healthy = [j for j in range(len(group)) if j not in leaving]
        _log_curves(state, group, [j for j in healthy if group[j].step in group[j].log_points],
                    current_lrs, options)
        for j in healthy:
            member = group[j]
            due = time.monotonic() - member.last_checkpoint >= checkpoint_every_s
            if member.step in member.stage_end_points or member.done or due:
                failure = _checkpoint(state, j, member)
                if failure is not None:
                    records[active[j]] = _final_record(member, "failed", failure=failure)
                    leaving.append(j)
        healthy = [j for j in healthy if j not in leaving]
        finished = [j for j in healthy if group[j].done]
        if finished:
            bar.clear()  # the evaluation's own progress bars take the line
            records.update(_finish(state, members, active, [active[j] for j in finished],
                                   show_progress, options))
        if leaving or finished:
            return [active[j] for j in sorted(leaving + finished)]
        pending = 0
        segment = time.perf_counter()


def _checkpoint(state: StackedState, j: int, member: Member) -> dict | None:
    """Save member j's checkpoint, and its record's progress with it (so that a record never
    lags behind the checkpoint a resume will start from); or, when one of its parameters is no
    longer finite (the bound checked at this point was computed before the last update), save
    nothing and return the failure."""
    name = state.nonfinite_parameter(j)
    if name is not None:
        return {"step": member.step, "epoch": member.step / member.plan.steps_per_epoch,
                "reason": f"non-finite parameter {name} after step {member.step}; the last "
                          "good checkpoint is kept"}
    save_checkpoint(member.run_dir, state.payload(j, member))
    if member.step in member.stage_end_points:
        stage = member.plan.stage_at(member.step - 1)
        save_stage_snapshot(member.run_dir, stage.index, member.step,
                            member.step / member.plan.steps_per_epoch,
                            state.member_model_state(j))
    write_result(member.run_dir, _record(member, "running"))
    member.last_checkpoint = time.monotonic()
    return None


def _at_mark(member: Member) -> bool:
    """A step where the loop must look: a log point (the planned end is one) or a stage end."""
    return member.step in member.log_points or member.step in member.stage_end_points


def _failure(member: Member, values: np.ndarray, pending: int) -> dict | None:
    broken = ~np.isfinite(values)
    if not broken.any():
        return None
    bad_step = member.step - pending + int(np.argmax(broken)) + 1
    return {"step": bad_step, "epoch": bad_step / member.plan.steps_per_epoch,
            "reason": f"non-finite training bound ({values[broken][0]}) at step "
                      f"{bad_step}; the last good checkpoint is kept"}


def _log_curves(state: StackedState, group: list[Member], at_log: list[int],
                lrs: list[float] | None, options: ExecutionOptions) -> None:
    """A learning-curve row for every member at a log point, scored together."""
    if not at_log:
        return
    by_size: dict[int, list[int]] = {}
    for j in at_log:
        by_size.setdefault(group[j].curve_x.shape[0], []).append(j)
    for js in by_size.values():
        model = state.subset_model(js)
        x = torch.stack([group[j].curve_x for j in js])  # (M', n, 784)
        ll = log_likelihood_estimates(model, x, CURVE_SUBSET_K,
                                      fresh_generators(len(js), x.device),
                                      fast=options.numerics == "fast")
        for row, j in enumerate(js):
            member = group[j]
            member.curve.append(CurveRow(
                epoch=member.step / member.plan.steps_per_epoch, step=member.step,
                stage=member.plan.stage_at(member.step - 1).index,
                lr=lrs[j] if lrs is not None else member.plan.stage_at(member.step - 1).lr,
                train_bound_nll=-member.bound_sum / member.bound_count,
                test_nll_subset=float(-ll[row].mean()), subset_k=CURVE_SUBSET_K,
                subset_n=x.shape[1], seconds=member.train_seconds,
            ))
            member.bound_sum, member.bound_count = 0.0, 0
            write_curves(member.run_dir, member.curve)
            write_result(member.run_dir, _record(member, "running"))


def _finish(state: StackedState, members: list[Member], active: list[int],
            finishing: list[int], show_progress: bool, options: ExecutionOptions
            ) -> dict[int, dict]:
    """Evaluate the finishing members (indices into `members`), those sharing their evaluation
    inputs together, and write their complete records."""
    records = {}
    by_inputs: dict[tuple, list[int]] = {}
    for i in finishing:
        by_inputs.setdefault(members[i].inputs_key, []).append(i)
    device = next(state.model.parameters()).device
    for group in by_inputs.values():
        started = time.perf_counter()
        model = state.subset_model([active.index(i) for i in group])
        results = evaluate_members(model, members[group[0]].inputs,
                                   [members[i].config for i in group], device,
                                   [members[i].run_dir for i in group],
                                   show_progress=show_progress,
                                   fast=options.numerics == "fast")
        seconds = time.perf_counter() - started
        for i, (metrics, artifacts) in zip(group, results, strict=True):
            records[i] = _final_record(members[i], "complete", metrics=metrics,
                                       artifacts=artifacts, eval_seconds=seconds)
    return records


def _without(state: StackedState, active: list[int], leaving: list[int]
             ) -> tuple[StackedState, list[int]]:
    keep = [j for j, i in enumerate(active) if i not in leaving]
    if not keep:
        return state, []
    return state.select(keep), [active[j] for j in keep]


def _record(member: Member, status: str, **extra: Any) -> dict:
    return run_record(member.config, member.plan, member, status, **member.common, **extra)


def _final_record(member: Member, status: str, **extra: Any) -> dict:
    """Write and return the record a member leaves the group with."""
    record = _record(member, status, **extra)
    write_result(member.run_dir, record)
    member.record = record
    return record


def _bar_label(members: list[Member]) -> str:
    if len(members) == 1:
        return members[0].common["run_id"] or "train"
    return f"group of {len(members)}"


def standalone_group_step(configs: Sequence[RunConfig], data_dir: Path,
                          options: ExecutionOptions | None = None
                          ) -> tuple[Callable[[], torch.Tensor], StackedState]:
    """A callable that trains the runs `configs` (one group) one step together from their
    initial states, writing nothing to disk; and their stacked state. For benchmarks and
    profiling: flush_denormals is the caller's to set, as train_group sets it."""
    options = options or ExecutionOptions()
    check_group(configs)
    check_plugin_objectives(configs)
    device = resolve_device(configs[0].device)
    data = DataCache(Path(data_dir), device)
    members = [new_member(c, Path("."), None, None, data, device, options, len(configs))
               for c in configs]
    state = StackedState.fresh(members, device, fused=options.numerics == "fast",
                               compile_cpu=options.compile_cpu)
    step = _make_step(state, members, options)

    def train_one_step() -> torch.Tensor:
        out = step([m.step for m in members])
        for member in members:
            member.step += 1
        return out

    return train_one_step, state
