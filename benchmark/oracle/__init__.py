"""The oracle stage: the authors' own code (github:yburda/iwae at 78a6075, fetched and verified
like a dataset, never vendored) run beside the suite on the same problem, and compared.

Lockstep: the suite trains and records every random draw it makes (capture.py); the Python 2
driver (py2/) runs their experiments.py unmodified with their random stream replaced by those
draws, in the rows their graph consumes (layout.py); parameters, Adam moments, bounds, gradients,
evaluations and the data path are then compared (lockstep.py, evaluation.py, continuation.py,
datapath.py) against tolerances measured from float32 rounding of both sides (compare.py).
run.py runs the cases (cases.py) and records.py writes results/oracle/; command.py is
`python -m benchmark oracle`. It hands the report the records of a measured fidelity.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "oracle_command": "command",
    "run_oracle": "run",
    "default_cases": "cases",
    "short_cases": "cases",
    "LockstepCase": "cases",
    "ContinuationCase": "cases",
    "DataCase": "cases",
    "fetch_authors_code": "sources",
    "oracle_python": "environment",
    "load_summary": "records",
    "format_summary": "records",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
