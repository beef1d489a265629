"""manage.py or Python in a fresh interpreter, with exactly the environment a test gives."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Only what finds the interpreter and its packages: none of the test run's own settings.
_KEPT = ("PATH", "HOME", "VIRTUAL_ENV")


def fresh_python(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Python with these arguments in the project's folder, the variables ``env`` only."""
    clean = {name: value for name, value in os.environ.items() if name in _KEPT}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py with the production settings and these variables, as an operator runs it."""
    return fresh_python("manage.py", *args, **env)
