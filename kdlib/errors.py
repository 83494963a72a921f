"""Operating-system errors that say which path failed, what it is for, and how to fix it.

A bare ``PermissionError: [Errno 13] Permission denied: '/x/y'`` leaves the reader guessing
which of kdlib's folders ``/x/y`` is; :func:`path_error` turns it into a message such as
"cannot write /x/y (the result file): Permission denied. Pass a writable --out path."
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class PathError(OSError):
    """An OS error on one of kdlib's paths; the message names the path's role and the fix."""


def path_error(action: str, path: Path | str, role: str, exc: OSError, fix: str) -> PathError:
    """A :class:`PathError` for ``exc``, raised while trying to ``action`` ``path``."""
    reason = exc.strerror or str(exc)
    return PathError(exc.errno, f"cannot {action} {path} ({role}): {reason}. {fix}")


def check_writable_file(path: Path | str, role: str, fix: str) -> None:
    """Raise a :class:`PathError` now, before any work is done, unless a file can be written at
    ``path`` (its folder can be created and written to, and ``path`` is not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise PathError(f"cannot write {path} ({role}): it is a folder, not a file. {fix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise path_error("write", path, role, exc, fix) from exc
