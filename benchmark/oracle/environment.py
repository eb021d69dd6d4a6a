"""The Python 2.7 environment the authors' code runs in (`make oracle-env` builds it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmark.errors import UserError

DEFAULT_ENV = Path(".venv-oracle")
PINS = {"numpy": "1.16.6", "scipy": "1.2.3", "theano": "1.0.5", "progressbar": "2.5"}
DRIVER = Path(__file__).parent / "py2" / "driver.py"
VERSION_CHECK = ("import sys, numpy, scipy, theano; "
                 "print('%d.%d %s %s %s' % (sys.version_info[0], sys.version_info[1], "
                 "numpy.__version__, scipy.__version__, theano.__version__))")


def oracle_env() -> Path:
    return Path(os.environ.get("IWAE_ORACLE_ENV", DEFAULT_ENV))


def oracle_python(env: Path | None = None) -> Path:
    """The environment's python2.7, checked to hold the pinned packages."""
    env = env or oracle_env()
    python = env / "bin" / "python"
    if not python.exists():
        raise UserError(f"no oracle environment at {env}: run `make oracle-env` (it needs a "
                        "Python 2.7: set PYTHON2, or install one, e.g. with pyenv)")
    try:
        found = subprocess.run([str(python), "-c", VERSION_CHECK], capture_output=True,
                               text=True, timeout=120, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError) as err:
        raise UserError(f"the oracle environment {env} does not run ({err}); rebuild it with "
                        "`rm -rf {env} && make oracle-env`") from err
    wanted = ["2.7", PINS["numpy"], PINS["scipy"], PINS["theano"]]
    if found != wanted:
        raise UserError(f"the oracle environment {env} has {' '.join(found)}, expected "
                        f"{' '.join(wanted)}; rebuild it with `rm -rf {env} && make oracle-env`")
    return python


def theano_flags(env: Path, float_type: str) -> str:
    """Theano's compile cache lives in the environment, so repeated runs skip compiling."""
    cache = (env / "theano-cache").resolve()
    return f"floatX={float_type},device=cpu,compiledir={cache}"
