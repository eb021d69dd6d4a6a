"""The evaluation stage: the L_k estimator (k = 5000, per example), active units, pruning, and
applying them to a trained run.

likelihood.py estimates log p(x) per example; active_units.py counts and prunes inactive latent
units; inputs.py fixes which examples every run is scored on, binarized the same way for all;
run.py evaluates a trained model (or a group of them) into the metrics and artifacts of its result
record; snr.py measures the gradient signal-to-noise ratio of the estimators against K,
gradient_agreement.py checks on the same draws that each estimator's mean is what the literature
says, and snr_figure.py draws it; command.py is `python -m benchmark evaluate`. How tight L_k is:
ais.py is annealed importance sampling along the paths of annealing_path.py with the HMC
transitions of hmc.py, bdmc.py sandwiches log p(x) on data simulated from the model,
ais_evaluation.py runs both over many examples in resumable batches (batch_store.py), and
ais_command.py is `evaluate --ais` / `--bdmc`. test_scores.py and binarization_command.py score
MNIST runs on the binarizations of the MNIST test images (`evaluate --test`), at every stage.
It hands training the metrics it records when a run completes, and the report the per-example
values and AIS/BDMC summaries saved beside them.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "log_likelihood_estimates": "likelihood",
    "summarise_nll": "likelihood",
    "NLLEstimate": "likelihood",
    "ACTIVE_UNIT_EXAMPLES": "active_units",
    "ACTIVE_UNIT_THRESHOLD": "active_units",
    "active_unit_masks": "active_units",
    "count_active_units": "active_units",
    "unit_variances": "active_units",
    "EVAL_NOISE_SEED": "inputs",
    "EVAL_SUBSET_SEED": "inputs",
    "TRAIN_SUBSET_N": "inputs",
    "TRAIN_SUBSET_SEED": "inputs",
    "EvaluationInputs": "inputs",
    "binary_split": "inputs",
    "evaluation_inputs": "inputs",
    "evaluation_key": "inputs",
    "random_subset": "inputs",
    "evaluate_members": "run",
    "fresh_generators": "run",
    "save_npy": "run",
    "score": "run",
    "score_members": "run",
    "DEFAULT_DRAWS": "snr",
    "DEFAULT_KS": "snr",
    "EXCLUSION_RULE": "snr",
    "snr_estimators": "snr",
    "noise_floor": "snr",
    "prediction_checks": "snr",
    "prediction_line": "snr",
    "relative_standard_error": "snr",
    "snr_study": "snr",
    "weight_regime": "snr",
    "snr_figure_png": "snr_figure",
    "AGREEMENT_RULE": "gradient_agreement",
    "evaluate_command": "command",
    "evaluate_run": "command",
    "score_binarizations": "binarization_command",
    "images_to_score": "binarization_command",
    "score_images_at": "binarization_command",
    "load_trained_model": "trained_model",
    "ais_evaluate_command": "ais_command",
    "evaluate_run_ais": "ais_command",
    "evaluate_run_bdmc": "ais_command",
    "AISSettings": "ais_evaluation",
    "evaluate_ais": "ais_evaluation",
    "evaluate_bdmc": "ais_evaluation",
    "HMCSettings": "hmc",
    "ModelPath": "annealing_path",
    "sigmoid_schedule": "ais",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
