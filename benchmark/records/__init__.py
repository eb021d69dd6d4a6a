"""The records layer: what a run leaves on disk, written so that nothing is ever half-written.

fileio.py writes atomically (temp file + rename) and digests files; results.py is the result
record (result.json) and loads many of them; checkpoint.py saves and verifies checkpoints;
stage_snapshots.py keeps the model at every stage end;
curves.py the learning curve (metrics.csv); environment.py what the run ran on;
training_lock.py the OS lock a process holds on a run directory while it trains it. Every stage
writes through it and it imports none of them: it is the base the pipeline stands on, and the
interface between the trainer and the report.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "atomic_write": "fileio",
    "atomic_write_bytes": "fileio",
    "atomic_write_json": "fileio",
    "atomic_write_text": "fileio",
    "file_digest": "fileio",
    "read_json": "fileio",
    "remove_temporaries": "fileio",
    "RESULT_FILE": "results",
    "STATUSES": "results",
    "iter_results": "results",
    "load_result": "results",
    "load_results_frame": "results",
    "write_result": "results",
    "CHECKPOINT_DIR": "checkpoint",
    "LOST_MODEL_ADVICE": "checkpoint",
    "RESTART_ADVICE": "checkpoint",
    "has_checkpoint": "checkpoint",
    "load_latest_checkpoint": "checkpoint",
    "remove_checkpoint_temporaries": "checkpoint",
    "save_checkpoint": "checkpoint",
    "STAGES_DIR": "stage_snapshots",
    "StageSnapshot": "stage_snapshots",
    "load_stage_snapshot": "stage_snapshots",
    "save_stage_snapshot": "stage_snapshots",
    "stage_snapshot_stages": "stage_snapshots",
    "TRAINING_LOCK_FILE": "training_lock",
    "TrainingLock": "training_lock",
    "is_being_trained": "training_lock",
    "CurveRow": "curves",
    "write_curves": "curves",
    "environment_record": "environment",
    "git_commit": "environment",
    "resolve_device": "environment",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
