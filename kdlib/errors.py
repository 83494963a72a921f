"""Errors that say what is wrong and how to fix it, and the checks that raise them early.

A bare ``PermissionError: [Errno 13] Permission denied: '/x/y'`` leaves the reader guessing
which of kdlib's folders ``/x/y`` is; :func:`path_error` turns it into a message such as
"cannot write /x/y (the result file): Permission denied. Pass a writable --out path."

:class:`UsageError` marks bad input (a flag that does not apply, a file of the wrong shape): the
command-line runner prints its message as one line, without a traceback.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class PathError(OSError):
    """An OS error on one of kdlib's paths; the message names the path's role and the fix."""


class UsageError(ValueError):
    """Bad input from the user (a flag, a file, a setting); the message says how to fix it."""


def path_error(action: str, path: Path | str, role: str, exc: OSError, fix: str) -> PathError:
    """A :class:`PathError` for ``exc``, raised while trying to ``action`` ``path``."""
    reason = exc.strerror or str(exc)
    return PathError(exc.errno, f"cannot {action} {path} ({role}): {reason}. {fix}")


def write_target(path: Path | str) -> Path:
    """The file a write to ``path`` must change: ``path`` itself, or the file a symbolic link at
    ``path`` points to (a write through a link updates its target; the link stays a link)."""
    return Path(os.path.realpath(path))


def check_not_read_only(path: Path | str, role: str, fix: str) -> None:
    """Refuse to replace an existing file that its owner made read-only (mode without ``u+w``):
    the rename of an atomic write would otherwise replace it silently."""
    target = write_target(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise path_error("read", path, role, exc, fix) from exc
    if stat.S_ISREG(mode) and not mode & stat.S_IWUSR:
        shown = f"{path} (a link to {target})" if target != Path(path).absolute() else str(path)
        raise PathError(f"cannot write {shown} ({role}): the file is read-only. "
                        f"Make it writable (chmod u+w {target}) to let kdlib update it, or {fix[0].lower()}"
                        f"{fix[1:]}")


def check_writable_file(path: Path | str, role: str, fix: str) -> None:
    """Raise a :class:`PathError` now, before any work is done, unless a file can be written at
    ``path`` (through a symbolic link: at its target): its folder can be created and written to,
    it is not a folder, and it is not a read-only file."""
    path = Path(path)
    target = write_target(path)
    if target.is_dir():
        raise PathError(f"cannot write {path} ({role}): it is a folder, not a file. {fix}")
    if target.exists() and not target.is_file():
        raise PathError(f"cannot write {path} ({role}): it is not a regular file (a device, a pipe or a "
                        f"socket), and kdlib replaces a file by renaming a new one over it. {fix}")
    check_not_read_only(path, role, fix)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise path_error("write", path, role, exc, fix) from exc
