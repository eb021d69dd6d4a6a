"""The models stage: the paper's networks and the objectives trained on them.

Networks (network.py) carry a leading member dimension, so M independent models of one
architecture run as one batched computation; their log-weights log p(x, h) - log q(h|x) are
what every objective and estimator reads. bernoulli_head.py is the fused decoder output used by
the fast numerics; objectives.py holds the bounds (VAE-k, IWAE-k, MIWAE, CIWAE) and the training
loss; estimators.py the objectives a run can train and their gradient estimators (STL, DReG,
PIWAE, RWS), for a group whose members may each train another. It hands training and
evaluation an IWAEModel and the objectives to train it with.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "ARCHITECTURES": "network",
    "Architecture": "network",
    "BlockSpec": "network",
    "Generators": "network",
    "IWAEModel": "network",
    "authors_logit": "network",
    "standard_normal": "network",
    "bernoulli_log_likelihood": "network",
    "gaussian_log_density": "network",
    "standard_normal_log_density": "network",
    "bound": "objectives",
    "training_loss": "objectives",
    "Objective": "estimators",
    "GroupObjectives": "estimators",
    "Estimate": "estimators",
    "estimator_backward": "estimators",
    "objective_of": "estimators",
    "check_plugin_objectives": "estimators",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
