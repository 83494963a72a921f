"""Result files with provenance, written atomically as strict JSON.

A result file is JSON: ``{"experiment": ..., "provenance": {...}, "rows": {row_id: {...}}}``.
Rows are added one at a time as they finish, so an interrupted run loses at most the row in
progress and a rerun skips the rows already there (resumable runs). ``wall_s`` is the wall time
of every run on the file, updated at each write. Writes merge with what is on disk under a file
lock (``<file>.lock``), so concurrent runs on one file lose no row.

Every write of kdlib (result files, checkpoints, caches) goes through :func:`atomic_write_bytes`:
a temporary file in the same folder, renamed over the target, so a reader never sees a
half-written file. A write through a symbolic link updates the link's target, an existing file
keeps its permissions, and a read-only file is refused with a message, not replaced.

Result files are strict JSON (no ``NaN`` or ``Infinity`` tokens, which most JSON readers
reject). A row whose accuracy is not a finite number is refused: it is a failed run, not a
result. Any other non-finite measurement (e.g. the mean confidence of an empty reliability bin)
is written as ``null``, and the file lists where under ``non_finite_as_null``.
"""

from __future__ import annotations

import glob
import json
import math
import os
import platform
import re
import secrets
import socket
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdlib.errors import PathError, UsageError, check_not_read_only, check_writable_file, path_error, write_target

OUT_FIX = "Pass a writable --out path (or out= argument), or free space on its disk"
STALE_TEMP_S = 3600.0
"""A temporary file of an atomic write older than this (an hour; a write takes seconds) is a
leftover of a killed writer and is removed."""
LOCK_TIMEOUT_S = 60.0
NULLS_KEY = "non_finite_as_null"


# --------------------------------------------------------------------------------------------
# Atomic writes


def temporary_path(target: Path) -> Path:
    """``.<name>.<host>-<pid>.<random>.tmp`` beside ``target``: the writer's host and process id
    in the name let a later writer recognise a leftover of a killed one."""
    return target.with_name(f".{target.name}.{socket.gethostname()}-{os.getpid()}.{secrets.token_hex(4)}.tmp")


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


def is_stale_temporary(temp: Path, target_name: str) -> bool:
    """A temporary file of a write to ``target_name`` that no running writer owns: its writer
    (named in the file name) is not running on this host, or it is older than
    :data:`STALE_TEMP_S`."""
    try:
        age = time.time() - temp.stat().st_mtime
    except OSError:
        return False
    if age > STALE_TEMP_S:
        return True
    match = re.fullmatch(rf"\.{re.escape(target_name)}\.(?P<host>.+)-(?P<pid>\d+)\.[0-9a-f]+\.tmp", temp.name)
    return bool(match) and match["host"] == socket.gethostname() and not process_alive(int(match["pid"]))


def remove_stale_temporaries(target: Path) -> None:
    """Delete the temporary files that killed writers of ``target`` left behind (best effort)."""
    for temp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        if is_stale_temporary(temp, target.name):
            temp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes, role: str = "a file kdlib writes",
                       fix: str = "Pass another path") -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename in the same folder).

    Through a symbolic link the link's target is written. An existing file keeps its mode (a
    private 0600 file stays private), a new one gets the mode the umask allows; a read-only one is refused with a
    :class:`kdlib.errors.PathError`. Leftover temporary files of killed writers are removed.
    """
    target = write_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    check_not_read_only(path, role, fix)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()  # a new file gets what open() would give it
    remove_stale_temporaries(target)
    temp = temporary_path(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def non_finite_paths(obj: Any, where: str = "") -> list[str]:
    """Where ``obj`` (nested dicts and lists) holds a float that is NaN or infinite, e.g.
    ``["reliability.confidence[0]"]``."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "(the value)"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_paths(v, f"{where}[{i}]")]
    return []


def with_nulls(obj: Any) -> Any:
    """A copy of ``obj`` with every NaN or infinite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: with_nulls(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [with_nulls(v) for v in obj]
    return obj


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically. A NaN or infinite number
    is refused with a ``ValueError`` that says where it is (JSON has no token for it)."""
    try:
        text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=False)
    except ValueError as exc:
        where = ", ".join(non_finite_paths(obj)[:5])
        raise ValueError(f"cannot write {path}: {where} is not a finite number, and kdlib writes strict "
                         "JSON (no NaN or Infinity); record such a value as None") from exc
    atomic_write_bytes(path, (text + "\n").encode())


# --------------------------------------------------------------------------------------------
# Provenance


def source_checkout() -> Path | None:
    """The course repository's folder when kdlib is used from its working tree (an editable
    install, or ``PYTHONPATH``): the folder above the package holds a ``pyproject.toml`` that
    names kdlib. ``None`` when kdlib is installed as a package (``pip install``, Colab)."""
    root = Path(__file__).resolve().parents[1]
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"kdlib"\s*$', text, re.MULTILINE) else None


def git_commit() -> str:
    """The git commit of the course repository kdlib runs from, with ``+dirty`` when code
    (anything outside ``results/``) has uncommitted changes. In a copy of the tree without git
    (e.g. on a GPU machine) it is ``KDLIB_GIT_COMMIT`` if set, else ``unknown``; for an
    installed package it is ``unknown`` (``kdlib_version`` in the provenance says which kdlib
    ran), never the commit of some repository that happens to enclose ``site-packages``."""
    root = source_checkout()
    if root is None:
        return "unknown"
    fallback = os.environ.get("KDLIB_GIT_COMMIT", "unknown")

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return fallback  # not a repository, or the tree lies inside another one
        commit = git("rev-parse", "HEAD").stdout.strip()
        if not commit:
            return fallback
        # changes to result files themselves do not make the code "dirty"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results").stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return fallback


def environment() -> dict[str, Any]:
    """Machine and library versions, for a result file's provenance."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def new_provenance(command: str | None = None, **extra: Any) -> dict[str, Any]:
    """Provenance for a result file started now: command, kdlib's version, git commit (in a
    checkout), environment, time."""
    import kdlib

    return {
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "kdlib_version": kdlib.__version__,
        "git_commit": git_commit(),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        **extra,
    }


def data_kind(source: str) -> str:
    """Which copy of the data a dataset's ``source`` names, without its folder or checks, e.g.
    ``"original MNIST IDX files"`` or ``"the course mirror cifar10-jpeg.tgz"``."""
    return source.split(" (")[0].split(" from ")[0]


# --------------------------------------------------------------------------------------------
# Result files


def shape_problem(data: Any) -> str | None:
    """What makes ``data`` (parsed JSON) not a result file, or ``None`` if it is one."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    if not isinstance(data.get("experiment"), str):
        return "it has no 'experiment' name"
    if not isinstance(data.get("provenance"), dict):
        return "it has no 'provenance' object"
    if not isinstance(data.get("rows"), dict):
        return f"its 'rows' is a {type(data.get('rows')).__name__}, not an object of rows by id"
    bad = next((key for key, row in data["rows"].items() if not isinstance(row, dict)), None)
    if bad is not None:
        return f"its row {bad!r} is a {type(data['rows'][bad]).__name__}, not an object"
    for key, row in data["rows"].items():
        for field, value in row.items():
            if field.startswith("accuracy") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                 or not math.isfinite(value)):
                return (f"its row {key!r} has {field} = {value!r}, not a finite number (a failed or hand-edited "
                        "row: it would be counted as done)")
    if not isinstance(data.get("resumed", []), list) or not all(isinstance(r, dict) for r in data.get("resumed", [])):
        return "its 'resumed' is not a list of provenance objects"
    wall = data.get("wall_s", 0.0)
    if isinstance(wall, bool) or not isinstance(wall, (int, float)):
        return "its 'wall_s' is not a number"
    return None


def refuse_constant(token: str) -> None:
    raise ValueError(f"{token} is not valid in strict JSON")


def parse_result_file(text: str, where: Path | str) -> dict[str, Any]:
    """A result file's text, parsed as strict JSON (no ``NaN`` or ``Infinity`` tokens) and
    checked to be a result file (:func:`shape_problem`); else a :class:`UsageError` naming
    ``where`` and what is wrong."""
    fix = "pass another --out path, or move the file away to start the run afresh"
    try:
        data = json.loads(text, parse_constant=refuse_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise UsageError(f"{where} is not valid JSON ({exc}); {fix}") from exc
    problem = shape_problem(data)
    if problem is not None:
        raise UsageError(f"{where} is valid JSON but not a kdlib result file: {problem}; {fix}")
    return data


def refuse_non_finite_accuracy(row_id: str, row: dict[str, Any], path: Path | None) -> None:
    """A row whose accuracy (``accuracy``, ``accuracy_int8``, ...) is NaN or infinite is a failed
    run: refuse it, so that no table averages it or counts it as done."""
    for key, value in row.items():
        if key.startswith("accuracy") and isinstance(value, float) and not math.isfinite(value):
            where = f" of {path}" if path is not None else ""
            raise ValueError(f"row {row_id!r}{where} has {key} = {value}: a result row needs a finite accuracy, "
                             "so it is not recorded (the rows before it are kept). A NaN accuracy comes from "
                             "NaN outputs of the model or an empty test set: fix that and rerun")


class ResultFile:
    """A resumable JSON result file: rows keyed by an id, saved atomically after each row."""

    def __init__(self, path: Path | str | None, experiment: str, provenance: dict[str, Any]) -> None:
        """Open (resume) or start the file at ``path``; with ``path=None`` rows stay in memory.
        Everything that would fail at the first save is checked now, before any training."""
        self.path = Path(path) if path is not None else None
        if self.path is not None:  # fail now, not after the first hour of training
            check_writable_file(self.path, "the result file", OUT_FIX)
            self.check_lock()
        if self.path is not None and self.path.exists():
            self.data = self.read()
            if self.data["experiment"] != experiment:
                raise UsageError(
                    f"{self.path} holds experiment {self.data['experiment']!r}, not {experiment!r}; "
                    "pass another --out path"
                )
            self.check_same_scale(provenance)
            self.data.setdefault("resumed", []).append(provenance)
        else:
            self.data = {"experiment": experiment, "provenance": provenance, "rows": {}}
        # wall time of all runs on this file, kept up to date at every save (a killed run keeps its time)
        self._wall_before = float(self.data.get("wall_s", 0.0))
        self._opened = time.perf_counter()

    @property
    def target(self) -> Path:
        """The file that is written: ``path``, or the target of a symbolic link at ``path``."""
        assert self.path is not None
        return write_target(self.path)

    @property
    def lock_path(self) -> Path:
        """``<file>.lock`` beside the written file (one lock however the file is reached)."""
        return self.target.with_name(self.target.name + ".lock")

    def lock_error(self, problem: str, fix: str) -> PathError:
        return PathError(f"cannot lock {self.lock_path}, the lock file of the result file {self.path} "
                         f"({problem}). {fix}")

    def check_lock(self) -> None:
        """Take and release the file's lock once, so that a lock path that cannot work (a folder,
        an unreadable file) is reported now, with a fix that works."""
        from filelock import FileLock, Timeout

        lock = self.lock_path
        if lock.is_dir():
            raise self.lock_error("it is a folder, not a file",
                                  f"kdlib creates and uses that file itself: move the folder away "
                                  f"(mv {lock} {lock}.old), then rerun")
        try:
            FileLock(str(lock), timeout=0).acquire().lock.release()
        except Timeout:
            pass  # another run is writing the file right now: fine, we will wait our turn
        except OSError as exc:
            raise self.unusable_lock(exc) from exc

    def unusable_lock(self, exc: OSError) -> PathError:
        return self.lock_error(exc.strerror or str(exc),
                               f"It holds no data: make it readable and writable (chmod u+rw {self.lock_path}) "
                               "or delete it, and kdlib creates it again")

    def read(self) -> dict[str, Any]:
        """The file's content, checked to be a result file (else a message naming the file and
        what is wrong with it)."""
        assert self.path is not None
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise path_error("read", self.path, "the result file", exc, OUT_FIX) from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{self.path} is not valid JSON ({exc}); pass another --out path, or move the "
                             "file away to start the run afresh") from exc
        return parse_result_file(text, self.path)

    def check_same_scale(self, provenance: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        """Refuse to resume rows made at another profile, or with another value of a scale setting
        that both runs record (rows of two scales must not be mixed in one table); ``old``: the
        provenance the rows were made with (default: the file's as this run read it)."""
        old = self.data["provenance"] if old is None else old
        new = json.loads(json.dumps(provenance, default=str))
        differences = []
        if old.get("profile") is not None and new.get("profile") is not None and old["profile"] != new["profile"]:
            differences.append(f"profile {old['profile']!r} (this run: {new['profile']!r})")
        old_scale, new_scale = old.get("scale") or {}, new.get("scale") or {}
        if isinstance(old_scale, dict) and isinstance(new_scale, dict):
            differences += [f"{key} = {old_scale[key]!r} (this run: {new_scale[key]!r})"
                            for key in sorted(set(old_scale) & set(new_scale)) if old_scale[key] != new_scale[key]]
        if differences:
            raise UsageError(f"{self.path} was made with {'; '.join(differences)}: its rows cannot be resumed "
                             "at another scale; pass another --out path, or move the file away to start afresh")

    def use_data_source(self, source: str, key: str = "data_source") -> None:
        """Record which copy of the data the rows come from (``provenance[key]``), or, when the
        file already names one, refuse another copy: rows of CIFAR-10's JPEG mirror and of its
        original batches must not be mixed in one table, nor one's teacher replace the other's."""
        recorded = self.data["provenance"].get(key)
        if recorded is None:
            self.data["provenance"][key] = source
        elif data_kind(str(recorded)) != data_kind(source):
            raise UsageError(
                f"{self.path} holds rows made from {data_kind(str(recorded))}, but this run reads "
                f"{data_kind(source)}: rows of two copies of the data cannot be mixed in one table. Point "
                "KDLIB_DATA at the copy the file was made from, or pass another --out path (or move the file "
                "away) to start afresh")

    @property
    def run_provenance(self) -> dict[str, Any]:
        """The provenance of the run that has the file open: the file's own when it started the
        file, else this run's entry under ``resumed`` (so that what a resumed run records, e.g.
        its thread count, does not overwrite what the first run recorded)."""
        return self.data["resumed"][-1] if self.data.get("resumed") else self.data["provenance"]

    def has(self, row_id: str) -> bool:
        return row_id in self.data["rows"]

    def get(self, row_id: str) -> dict[str, Any]:
        return self.data["rows"][row_id]

    def put(self, row_id: str, row: dict[str, Any]) -> None:
        """Add or replace a row and save the file at once (a row with a non-finite accuracy is
        refused with a ``ValueError``)."""
        refuse_non_finite_accuracy(row_id, row, self.path)
        self.data["rows"][row_id] = row
        self.save()

    def merge_from_disk(self) -> None:
        """Take in the rows another process wrote to the file since we read it (ours win on a
        clash: they are newer). Called under the file's lock, just before writing."""
        if self.path is None or not self.path.exists():
            return
        on_disk = self.read()
        self.check_same_run(on_disk)
        self.data["rows"] = {**on_disk["rows"], **self.data["rows"]}
        # what another run added to the provenance (a data source of its own) or to the list of
        # resumed runs is kept too
        self.data["provenance"] = {**on_disk["provenance"], **self.data["provenance"]}
        def run_key(entry: Any) -> str:
            return json.dumps([entry.get("started_utc"), entry.get("command")] if isinstance(entry, dict)
                              else entry, default=str)

        resumed = {run_key(r): r for r in on_disk.get("resumed", [])}
        resumed.update({run_key(r): r for r in self.data.get("resumed", [])})  # ours win
        if resumed:
            self.data["resumed"] = list(resumed.values())
        nulls = {**on_disk.get(NULLS_KEY, {}), **self.data.get(NULLS_KEY, {})}
        if nulls:
            self.data[NULLS_KEY] = nulls

    def check_same_run(self, on_disk: dict[str, Any]) -> None:
        """Under the lock, before merging: the file on disk (written by another run since this one
        read it, e.g. two runs that started the same new file at once) must hold the same
        experiment, at the same scale, from the same copy of the data; else nothing is merged."""
        if on_disk["experiment"] != self.data["experiment"]:
            raise UsageError(f"{self.path} now holds experiment {on_disk['experiment']!r}, written by another run "
                             f"while this one ({self.data['experiment']!r}) was running: the rows cannot be "
                             "mixed; pass another --out path (the rows of this run are in memory: rerun)")
        mine, theirs = self.data["provenance"], on_disk["provenance"]
        self.check_same_scale(mine, old=theirs)
        for key in ("data_source",):
            if mine.get(key) is not None and theirs.get(key) is not None \
                    and data_kind(str(mine[key])) != data_kind(str(theirs[key])):
                raise UsageError(f"{self.path} now holds rows made from {data_kind(str(theirs[key]))} by another "
                                 f"run, and this run reads {data_kind(str(mine[key]))}: rows of two copies of the "
                                 "data cannot be mixed; pass another --out path")

    def set(self, key: str, value: Any) -> None:
        """Set a top-level entry (e.g. total wall time) and save."""
        self.data[key] = value
        self.save()

    def nulls_for_non_finite(self) -> None:
        """Replace NaN and infinite measurements in the rows by ``None`` (JSON ``null``) and list
        where under :data:`NULLS_KEY`, so that the file stays strict JSON."""
        for row_id, row in self.data["rows"].items():
            paths = non_finite_paths(row)
            if paths:
                self.data["rows"][row_id] = with_nulls(row)
                listed = self.data.setdefault(NULLS_KEY, {}).get(row_id, [])
                self.data[NULLS_KEY][row_id] = listed + [p for p in paths if p not in listed]

    def save(self) -> None:
        """Write the file (with the wall time so far) atomically. An advisory lock on
        ``<file>.lock`` makes read-merge-write one step, so that two runs writing the same file
        at once (two terminals, two notebooks) keep every row of both."""
        self.data["wall_s"] = self._wall_before + time.perf_counter() - self._opened
        if self.path is None:
            return
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT_S)
        resume = "(the rows finished so far are in memory: rerun to resume)"
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout as exc:
            raise self.lock_error(f"another run has held it for {LOCK_TIMEOUT_S:.0f} s",
                                  f"Wait for that run, or pass another --out path {resume}") from exc
        except OSError as exc:
            if self.lock_path.is_dir():
                raise self.lock_error("it is a folder, not a file",
                                      f"Move the folder away (mv {self.lock_path} {self.lock_path}.old) {resume}") from exc
            raise self.unusable_lock(exc) from exc
        try:
            self.merge_from_disk()
            self.remove_orphans()
            self.nulls_for_non_finite()
            atomic_write_json(self.path, self.data)
        except PathError:
            raise
        except OSError as exc:
            raise path_error("write", self.path, "the result file", exc, f"{OUT_FIX} {resume}") from exc
        finally:
            lock.release()

    def remove_orphans(self) -> None:
        """Delete temporary files that a killed writer left behind. Called under the lock, so no
        other writer of this file is in the middle of writing one."""
        for orphan in self.target.parent.glob(f".{glob.escape(self.target.name)}.*.tmp"):
            orphan.unlink(missing_ok=True)


@contextmanager
def editing(path: Path | str) -> Iterator[dict[str, Any]]:
    """Change an existing result file in one locked step: ``with editing(path) as data:`` yields
    its parsed content under the same lock that :meth:`ResultFile.save` takes, and writes
    ``data`` back atomically when the block ends without an exception (nothing is written if it
    raises). A missing file is refused before any lock file is made."""
    from filelock import FileLock

    if not Path(path).exists():
        raise FileNotFoundError(f"no result file at {path}: run the experiment's command to create it")
    target = write_target(Path(path))
    with FileLock(str(target.with_name(target.name + ".lock")), timeout=LOCK_TIMEOUT_S):
        data = load_results(path)
        yield data
        atomic_write_json(path, data)


def load_results(path: Path | str) -> dict[str, Any]:
    """Read a result file written by :class:`ResultFile`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result file at {path}: run the experiment's command to create it")
    return parse_result_file(path.read_text(), path)


def short_commit(commit: str) -> str:
    """A commit's first seven characters, keeping the ``+dirty`` mark of a working tree that
    had uncommitted changes (``243c8ce+dirty``)."""
    return commit[:7] + ("+dirty" if commit.endswith("+dirty") else "")


def provenance_lines(data: dict[str, Any]) -> list[str]:
    """How a result file was made, as short lines for a chapter: command (without its output
    path), code version (and the versions of any resumed runs), machine, libraries, data, and
    the summed training time of its rows (a network two rows record, once; a float student
    trained again for quantization-aware training, once for all its bit widths), with the part
    of it its teachers took, and the file's wall time. A teacher read from the checkpoint cache
    counts the training time recorded when it was made, in another run: the wall time, which
    counts only the runs that wrote the file, can then be the smaller."""
    prov, env = data["provenance"], data["provenance"]["environment"]
    machine = env["cuda_device"] if prov.get("device", "cpu").startswith("cuda") and env.get("cuda_device") \
        else f"{env['processor']}, {env['cpu_count']} cores"
    resumed = ", ".join(short_commit(r["git_commit"]) for r in data.get("resumed", []))
    command = re.sub(r" --out \S+", "", prov["command"])
    lines = [f"command:    {command}",
             f"git commit: {prov['git_commit']}" + (f" (resumed at {resumed})" if resumed else ""),
             f"machine:    {machine}; {env['torch_threads']} training thread(s)",
             f"libraries:  torch {env['torch']}, numpy {env['numpy']}, python {env['python']}"]
    if "data_source" in prov:
        lines.append(f"data:       {data_kind(prov['data_source'])}")
    carried = prov.get("carried_over")
    if carried:
        made = short_commit(carried["provenance"]["git_commit"])
        first, *earlier = carried["from"].split(", carried there from ")
        lines.append(f"carried:    {len(carried['rows'])} rows made at {made}, from {first}")
        lines += [f"            (carried there from {where})" for where in earlier]
    rows = distinct_networks(data["rows"])
    # a float student trained again for its QAT rows (one training for all its bit widths)
    retrained = sorted({row["float_train_wall_s"] for row in rows if "float_train_wall_s" in row})
    training = sum(row.get("train_wall_s", 0.0) for row in rows) + sum(retrained)
    line = f"rows:       {len(data['rows'])}; their training time {training / 60:.0f} min"
    teachers = [row for row in rows if "teacher" in str(row.get("kind", ""))]
    timed = [row["train_wall_s"] for row in teachers if "train_wall_s" in row]
    whose = "the teacher's" if len(teachers) == 1 else f"the {len(teachers)} teachers'"
    if timed:
        line += f", {whose} {sum(timed) / 60:.0f} of it"
        line += f" ({len(teachers) - len(timed)} not recorded)" if len(timed) < len(teachers) else ""
    elif teachers:
        line += f"; {whose} not recorded"
    lines.append(line)
    if retrained:
        lines.append(f"            (with {len(retrained)} float students trained again for QAT, "
                     f"{sum(retrained) / 60:.0f} min)")
    if "wall_s" in data:
        lines.append(f"wall time:  {data['wall_s'] / 60:.0f} min, the runs that wrote the file")
    return lines


def distinct_networks(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a result file, a network recorded by several rows (the same
    ``weights_sha256``, e.g. a teacher and its rescaled copy) once, at its first row."""
    seen: set[str] = set()
    kept = []
    for row in rows.values():
        digest = row.get("weights_sha256")
        if digest is None or digest not in seen:
            kept.append(row)
        if digest is not None:
            seen.add(digest)
    return kept
