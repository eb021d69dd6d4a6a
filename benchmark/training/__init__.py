"""The training stage: runs trained to the paper's schedule, alone or as batched ensembles.

loop.py is the loop (train_run, train_group) with exact resume; run_setup.py sets runs up
(run directory, data, resume); group.py holds a group's members and their stacked model and
optimizer; step.py is one batched step (cuda_graph_step.py replays it as a CUDA graph);
optim.py holds both Adams (the paper's and the authors' code's), stacked_adam.py the same over
stacked members; schedule.py the 8-stage schedule and its cuts; minibatches.py the data order;
ensemble.py which runs may share a group; execution.py and denormals.py how a group executes
(numerics, CUDA graphs, TF32, flush-to-zero), never what it is; step_check.py chooses the step
a group trains with and proves the CUDA-graph step against the eager one before trusting it;
run_record.py the record a run writes; workload.py how much work a run is and timing.py how long
a step takes here (for the sweeps' cost model); command.py is `python -m benchmark train`;
diagnose.py is `python -m benchmark diagnose --snr` (at a checkpoint, or at the initialisation a
run starts from). It hands the sweeps a trainer that leaves, per run, checkpoints, a learning
curve and a result record (benchmark.records).
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "train_run": "loop",
    "train_group": "loop",
    "check_plugin_objectives": "loop",
    "standalone_group_step": "loop",
    "group_key": "ensemble",
    "split_into_groups": "ensemble",
    "ExecutionOptions": "execution",
    "execution_from_args": "execution",
    "Plan": "schedule",
    "make_plan": "schedule",
    "protocol_stages": "schedule",
    "steps_per_epoch": "schedule",
    "DataCache": "run_setup",
    "new_member": "run_setup",
    "StackedState": "group",
    "EagerStep": "step",
    "StepSpec": "step",
    "loss_reduction": "optim",
    "flush_denormals": "denormals",
    "train_command": "command",
    "Workload": "workload",
    "run_workload": "workload",
    "time_group_step": "timing",
    "time_evaluation_row": "timing",
    "group_configs": "timing",
    "synthetic_self_check": "timing",
    "diagnose_command": "diagnose",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
