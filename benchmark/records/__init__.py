"""The records layer: what a run leaves on disk, written so that nothing is ever half-written.

fileio.py writes atomically (temp file + rename) and digests files; results.py is the result
record (result.json) and loads many of them; record_reader.py is the one reader of what a run
folder holds (record_schema.py what a record may hold, run_folder.py paths that stay inside the
folder): a run folder from elsewhere is validated, never trusted; checkpoint.py saves and verifies
checkpoints (checkpoint_format.py their plain on-disk form, pickled_checkpoints.py the opt-in
for the pickled ones older versions wrote);
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
    "RESULT_FILE": "record_schema",
    "EVALUATIONS_DIR": "record_schema",
    "STATUSES": "record_schema",
    "iter_results": "results",
    "scan_results": "results",
    "CONFIG_FILE": "record_reader",
    "folder_problems": "record_reader",
    "read_array": "record_reader",
    "read_config": "record_reader",
    "read_run_json": "record_reader",
    "read_curves": "record_reader",
    "read_record": "record_reader",
    "RecordError": "run_folder",
    "inside": "run_folder",
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
    "TRUST_ENV": "pickled_checkpoints",
    "TRUST_FLAG": "pickled_checkpoints",
    "trust_pickled_checkpoints": "pickled_checkpoints",
    "publish_records": "publish",
    "STAGES_DIR": "stage_snapshots",
    "StageSnapshot": "stage_snapshots",
    "load_stage_snapshot": "stage_snapshots",
    "save_stage_snapshot": "stage_snapshots",
    "stage_snapshot_stages": "stage_snapshots",
    "TRAINING_LOCK_FILE": "training_lock",
    "TrainingLock": "training_lock",
    "is_being_trained": "training_lock",
    "CURVES_FILE": "curves",
    "CurveRow": "curves",
    "write_curves": "curves",
    "environment_record": "environment",
    "git_commit": "environment",
    "resolve_device": "environment",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
