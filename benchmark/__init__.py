"""Reproducibility suite for Importance Weighted Autoencoders (Burda, Grosse, Salakhutdinov).

The names a notebook needs, loaded on first use (so that `import benchmark` stays instant and
never loads torch until a function is called); each is documented in benchmark.api:

    RunConfig            what one run is: data, model, k, layers, seed, fidelity, schedule, ...
    train                train and evaluate one run -> Run (its directory and result record)
    sweep                a grid of runs on a local process pool (or Ray) -> SweepReport
    evaluate             L_k of a trained run on its test (or training) images
    score_binarizations  an MNIST run on the binarizations of the MNIST test images
    ais, bdmc            how tight L_k is: annealed importance sampling, bidirectional MC
    load_results         every result record of a results folder as a pandas DataFrame
    build_report         the HTML report of a results folder (benchmark.report is the stage)
"""

from __future__ import annotations

from benchmark.exports import lazy_exports

__version__ = "0.1.0"

EXPORTS = {  # public name: the module of this package that defines (or re-exports) it
    "RunConfig": "config",
    "Run": "api",
    "SweepReport": "api",
    "train": "api",
    "sweep": "api",
    "evaluate": "api",
    "score_binarizations": "api",
    "ais": "api",
    "bdmc": "api",
    "load_results": "api",
    "build_report": "api",
    "load_objectives": "api",
    "ObjectiveDefinition": "api",
    "Parameter": "api",
    "PublishedValue": "api",
}
__all__ = ["__version__", *sorted(EXPORTS)]
__getattr__ = lazy_exports(__name__, EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
