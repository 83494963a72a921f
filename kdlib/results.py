"""Result files with provenance, written atomically.

A result file is JSON: ``{"experiment": ..., "provenance": {...}, "rows": {row_id: {...}}}``.
Rows are added one at a time as they finish, so an interrupted run loses at most the row in
progress and a rerun skips the rows already there (resumable runs). ``wall_s`` is the wall time
of every run on the file, updated at each write. Writes merge with what is on disk under a file
lock, so concurrent runs on one file lose no row. Every write goes to a
temporary file in the same directory and is then renamed over the target, so a reader never
sees a half-written file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kdlib.errors import check_writable_file, path_error

OUT_FIX = "Pass a writable --out path (or out= argument), or free space on its disk"

def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename in the same directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def git_commit() -> str:
    """The current git commit of the course repository, with ``+dirty`` when code (anything
    outside ``results/``) has uncommitted changes. Outside a checkout (e.g. a copy of the tree on
    a GPU machine) it is ``KDLIB_GIT_COMMIT`` if set, else ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        if out.returncode != 0:
            return os.environ.get("KDLIB_GIT_COMMIT", "unknown")
        commit = out.stdout.strip()
        # changes to result files themselves do not make the code "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return commit + ("+dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("KDLIB_GIT_COMMIT", "unknown")


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
    """Provenance for a result file started now: command, git commit, environment, time."""
    return {
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        **extra,
    }


class ResultFile:
    """A resumable JSON result file: rows keyed by an id, saved atomically after each row."""

    def __init__(self, path: Path | str | None, experiment: str, provenance: dict[str, Any]) -> None:
        """Open (resume) or start the file at ``path``; with ``path=None`` rows stay in memory."""
        self.path = Path(path) if path is not None else None
        if self.path is not None:  # fail now, not after the first hour of training
            check_writable_file(self.path, "the result file", OUT_FIX)
        if self.path is not None and self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except OSError as exc:
                raise path_error("read", self.path, "the result file", exc, OUT_FIX) from exc
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{self.path} is not valid JSON ({exc}); move it away to start the run afresh"
                ) from exc
            if self.data.get("experiment") != experiment:
                raise ValueError(
                    f"{self.path} holds experiment {self.data.get('experiment')!r}, not {experiment!r}; "
                    "pass another --out path"
                )
            self.check_same_scale(provenance)
            self.data.setdefault("resumed", []).append(provenance)
        else:
            self.data = {"experiment": experiment, "provenance": provenance, "rows": {}}
        # wall time of all runs on this file, kept up to date at every save (a killed run keeps its time)
        self._wall_before = float(self.data.get("wall_s", 0.0))
        self._opened = time.perf_counter()

    def check_same_scale(self, provenance: dict[str, Any]) -> None:
        """Refuse to resume rows made at another profile, or with another value of a scale setting
        that both runs record (rows of two scales must not be mixed in one table)."""
        old, new = self.data["provenance"], json.loads(json.dumps(provenance, default=str))
        differences = []
        if old.get("profile") is not None and new.get("profile") is not None and old["profile"] != new["profile"]:
            differences.append(f"profile {old['profile']!r} (this run: {new['profile']!r})")
        old_scale, new_scale = old.get("scale") or {}, new.get("scale") or {}
        differences += [f"{key} = {old_scale[key]!r} (this run: {new_scale[key]!r})"
                        for key in sorted(set(old_scale) & set(new_scale)) if old_scale[key] != new_scale[key]]
        if differences:
            raise ValueError(f"{self.path} was made with {'; '.join(differences)}: its rows cannot be resumed "
                             "at another scale; pass another --out path, or move the file away to start afresh")

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
        """Add or replace a row and save the file at once."""
        self.data["rows"][row_id] = row
        self.save()

    def merge_from_disk(self) -> None:
        """Take in the rows another process wrote to the file since we read it (ours win on a
        clash: they are newer). Called under the file's lock, just before writing."""
        if self.path is None or not self.path.exists():
            return
        try:
            on_disk = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path} is not valid JSON ({exc}); move it away to start afresh") from exc
        self.data["rows"] = {**on_disk.get("rows", {}), **self.data["rows"]}

    def set(self, key: str, value: Any) -> None:
        """Set a top-level entry (e.g. total wall time) and save."""
        self.data[key] = value
        self.save()

    def save(self) -> None:
        """Write the file (with the wall time so far) atomically. An advisory lock on
        ``<file>.lock`` makes read-merge-write one step, so that two runs writing the same file
        at once (two terminals, two notebooks) keep every row of both."""
        self.data["wall_s"] = self._wall_before + time.perf_counter() - self._opened
        if self.path is None:
            return
        from filelock import FileLock

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path) + ".lock", timeout=60):
                self.merge_from_disk()
                self.remove_orphans()
                atomic_write_json(self.path, self.data)
        except OSError as exc:
            raise path_error("write", self.path, "the result file", exc,
                             f"{OUT_FIX} (the rows finished so far are in memory: rerun to resume)") from exc

    def remove_orphans(self) -> None:
        """Delete temporary files that a killed writer left behind. Called under the lock, so no
        other writer of this file is in the middle of writing one."""
        for orphan in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            orphan.unlink(missing_ok=True)


def load_results(path: Path | str) -> dict[str, Any]:
    """Read a result file written by :class:`ResultFile`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result file at {path}: run the experiment's command to create it")
    return json.loads(path.read_text())


def provenance_lines(data: dict[str, Any]) -> list[str]:
    """How a result file was made, as short lines for a chapter: command (without its output
    path), code version (and the versions of any resumed runs), machine, libraries, data, and
    the summed training time of its rows."""
    import re

    prov, env = data["provenance"], data["provenance"]["environment"]
    machine = env["cuda_device"] if prov.get("device", "cpu").startswith("cuda") and env.get("cuda_device") \
        else f"{env['processor']}, {env['cpu_count']} cores"
    resumed = ", ".join(r["git_commit"][:7] for r in data.get("resumed", []))
    command = re.sub(r" --out \S+", "", prov["command"])
    lines = [f"command:    {command}",
             f"git commit: {prov['git_commit']}" + (f" (resumed at {resumed})" if resumed else ""),
             f"machine:    {machine}; {env['torch_threads']} training thread(s)",
             f"libraries:  torch {env['torch']}, numpy {env['numpy']}, python {env['python']}"]
    if "data_source" in prov:
        lines.append(f"data:       {prov['data_source'].split(' (')[0].split(' from ')[0]}")
    training = sum(row.get("train_wall_s", 0.0) for row in data["rows"].values())
    lines.append(f"rows:       {len(data['rows'])}; their training time {training / 60:.0f} min")
    return lines
