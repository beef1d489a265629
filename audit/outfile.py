"""Files the audit commands write: whole or not at all, never a partial file left behind."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def output_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file, found before any work; None when it can."""
    if path.is_dir():
        return f"{path} is a folder; name a file in it"
    if not path.parent.is_dir():
        return f"{path.parent} is not a folder that exists"
    if not os.access(path.parent, os.W_OK):
        return f"{path.parent} is not writable"
    return None


@contextlib.contextmanager
def file_replaced(path: Path) -> Iterator[TextIO]:
    """A text file written beside ``path`` (readable by its owner only: the audit log names
    patients) and renamed onto it once complete; removed when the writing fails, so that no
    half export passes for a whole one. Raises OSError when it cannot be written."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
