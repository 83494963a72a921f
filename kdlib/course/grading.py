"""Contained grading: a submission's code never runs in the process that decides its score.

Otter-Grader's own runner (``otter run``, and its Docker image on Gradescope) executes the
submission in a Jupyter kernel and runs the tests *in that same kernel*: a submission can patch
the checkers, ``Verdict``, NumPy, or Otter's test runner itself before the tests run, and the
results file it writes is then whatever it says. The course's hidden tests therefore recompute
their own data (they never read the submission's ``mnist`` or ``problem``) and check the
verdict's type, but inside the kernel no test can be trusted against a submission that patches
Otter. This module grades so that it can:

* the **grader** (this process) reads the submission notebook as data, and never runs a line
  of it. For each autograded question it runs the assignment's own setup, imports the checker
  fresh, and calls it with the student's answers;
* the student's answers come from a **child process** (``python -I``, one per question, in a
  new empty folder, with a scrubbed environment), which runs the setup and the submission's code
  cells, then answers two requests over a pipe: *give the value of* ``name`` (sent back as data:
  numbers, strings, lists, dicts, tensors and arrays, a problem of :mod:`kdlib.theory`; never a
  pickle of an object, and tensors are read back with ``torch.load(weights_only=True)``), and
  *call the function* ``name`` *on these arguments* (the checker's arguments, sent as data; the
  result sent back as data). A function answer is a proxy in the grader: the checker calls it
  as it would call the student's function, and judges what comes back;
* the child has a **time limit** (each question: its setup and cells, then each request), after
  which its whole process group is killed and the question scores 0; a CPU-time and a memory
  limit besides;
* in the child, after the setup, a **Python audit hook** (which cannot be removed) refuses to
  write, delete, rename or change files outside its folder, to start processes, to load C
  libraries with ``ctypes``, to open network connections and to walk the garbage collector's
  objects (the way to the hook itself).

What this path trusts: the Python interpreter and the libraries of the grading environment. The
audit hook is a guard against the course's adversarial suite (shadowing, monkeypatching, fake
data, file access, endless loops, printed fake results), not an operating-system sandbox: it
does not restrict *reads* (a submission can read what the grading user can, the chapters with
their solutions and other submissions included), and a submission that finds a hole in
CPython's audit events could reach further. A container protects the machine, not the score (a
submission that patches Otter decides its score inside a container too): for work you do not
trust, run this command inside a container with no network and only that one submission
mounted; the instructor page says so.

    python -m kdlib.course.grading SUBMISSION.ipynb [--chapter 02_losses] [--timeout-s 60]

prints one line per question and the total, and exits 0.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

TIMEOUT_S = 60.0
"""Seconds a question's child may take to run the setup and the submission's cells, and then
each request."""

MEMORY_BYTES = 6 * 2**30
"""The child's address-space limit."""

CHILD = r'''
import base64, io, json, os, sys

proto_in = os.fdopen(os.dup(0), "r")
proto_out = os.fdopen(os.dup(1), "w", buffering=1)
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 0)
os.dup2(_null, 1)  # the submission's prints go nowhere: only data comes back, on our own pipe
job = json.loads(proto_in.readline())

import numpy as np
import torch
from kdlib import theory

scope = {"__name__": "__main__"}
exec(compile(job["setup"], "setup", "exec"), scope)

ROOT = os.path.realpath(os.getcwd())
WRITE_EVENTS = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod",
                          "os.chown", "os.link", "os.symlink", "os.utime", "shutil.rmtree", "shutil.move",
                          "shutil.copyfile", "shutil.copytree", "os.chflags", "os.lchmod"})
BLOCKED_PREFIXES = ("subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.system",
                    "os.kill", "os.killpg", "ctypes.", "socket.", "gc.get_", "sys._current_frames",
                    "os.forkpty", "pty.", "os.startfile", "winreg.", "sys.settrace", "sys.setprofile",
                    "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.")
FUNCTION_PARTS = frozenset({"__code__", "__defaults__", "__kwdefaults__", "__closure__", "__globals__"})


_me = []


def _guard(event, args, _root=ROOT, _writes=WRITE_EVENTS, _blocked=BLOCKED_PREFIXES, _parts=FUNCTION_PARTS, _me=_me,
           _realpath=os.path.realpath, _fsdecode=os.fsdecode, _sep=os.sep, _isinstance=isinstance,
           _str=str, _bytes=bytes, _int=int, _PathLike=os.PathLike, _Err=PermissionError,
           _write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
    def inside(path):
        try:
            real = _realpath(_fsdecode(path))
        except Exception:
            return False
        return real == _root or real.startswith(_root + _sep)

    if event == "open":
        path, mode, flags = args
        if _isinstance(path, _int):
            return
        writing = (_isinstance(mode, _str) and any(c in mode for c in "wax+")) or \
            (_isinstance(flags, _int) and flags & _write_flags)
        if writing and not inside(path):
            raise _Err(f"grading: writing {path!r} outside the submission's folder is refused")
    elif event in _writes:
        for arg in args:
            if _isinstance(arg, (_str, _bytes, _PathLike)) and not inside(arg):
                raise _Err(f"grading: {event} on {arg!r} outside the submission's folder is refused")
    elif event in ("object.__setattr__", "object.__delattr__"):
        if len(args) > 1 and args[0] is _me[0] and args[1] in _parts:  # rewriting this hook in place
            raise _Err("grading: changing the grading guard is refused")
    elif event.startswith(_blocked):
        raise _Err(f"grading: {event} is refused while a submission is graded")


_me.append(_guard)
sys.addaudithook(_guard)

for source in job["cells"]:
    try:
        exec(compile(source, "submission", "exec"), scope)
    except BaseException:  # noqa: BLE001 - a cell that fails is skipped, as Otter does
        pass


def encode(value, depth=0):
    if depth > 20:
        return {"unsupported": "nesting"}
    if value is None or type(value) in (bool, int, str):
        return {"v": value}
    if type(value) is float:
        return {"f": repr(value)}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value.detach().cpu().clone().as_subclass(torch.Tensor), buffer)
        return {"tensor": base64.b64encode(buffer.getvalue()).decode()}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            return {"unsupported": f"array of {array.dtype}"}
        return {"ndarray": encode(torch.from_numpy(np.array(array)), depth + 1), "scalar": array.ndim == 0
                and isinstance(value, np.generic)}
    if isinstance(value, theory.DiscreteProblem):
        return {"problem": [encode(value.marginal, depth + 1), encode(value.bayes, depth + 1)]}
    if type(value) in (list, tuple):
        return {type(value).__name__: [encode(v, depth + 1) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: encode(v, depth + 1) for k, v in value.items()}}
    if callable(value):
        return {"function": getattr(value, "__name__", "function")}
    return {"unsupported": type(value).__name__}


def decode(data):
    if "v" in data:
        return data["v"]
    if "f" in data:
        return float(data["f"])
    if "tensor" in data:
        value = torch.load(io.BytesIO(base64.b64decode(data["tensor"])), weights_only=True)
        return value.requires_grad_(True) if data.get("grad") and value.is_floating_point() else value
    if "list" in data:
        return [decode(v) for v in data["list"]]
    if "tuple" in data:
        return tuple(decode(v) for v in data["tuple"])
    if "dict" in data:
        return {k: decode(v) for k, v in data["dict"].items()}
    if "ndarray" in data:
        return decode(data["ndarray"]).numpy()
    raise ValueError("unsupported argument")


proto_out.write(json.dumps({"ready": True}) + "\n")
for line in proto_in:
    request = json.loads(line)
    try:
        if request["op"] == "get":
            reply = {"value": encode(scope.get(request["name"], None)), "defined": request["name"] in scope}
        else:
            fn = scope.get(request["name"])
            args = [decode(a) for a in request["args"]]
            followed = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            try:
                out = fn(*args)
                reply = {"value": encode(out)}
                if followed and isinstance(out, torch.Tensor) and out.requires_grad:
                    # the gradient of out.sum() with respect to the arguments that ask for one, as data
                    grads = torch.autograd.grad(out.sum(), followed, allow_unused=True)
                    reply["grads"] = [None if g is None else encode(g) for g in grads]
            except NotImplementedError:
                reply = {"error": "NotImplementedError", "message": ""}
            except BaseException as exc:  # noqa: BLE001 - the student's error, reported as data
                reply = {"error": type(exc).__name__, "message": str(exc)[:300]}
    except BaseException as exc:  # noqa: BLE001
        reply = {"error": type(exc).__name__, "message": str(exc)[:300]}
    proto_out.write(json.dumps(reply) + "\n")
'''


class GradingError(Exception):
    """The child could not answer (it timed out, died, or sent something that is not data)."""


class Unsupported:
    """An answer that is not data the grader reads (an object of the submission's own class)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind} object>"


def encode_argument(value: Any) -> dict[str, Any]:
    """A checker's argument as data for the child."""
    import numpy as np
    import torch

    if value is None or type(value) in (bool, int, str):
        return {"v": value}
    if type(value) is float:
        return {"f": repr(value)}
    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value.detach().cpu().clone(), buffer)
        return {"tensor": base64.b64encode(buffer.getvalue()).decode(), "grad": bool(value.requires_grad)}
    if isinstance(value, np.ndarray):
        return {"ndarray": encode_argument(torch.from_numpy(value.copy()))}
    if type(value) in (list, tuple):
        return {type(value).__name__: [encode_argument(v) for v in value]}
    if type(value) is dict:
        return {"dict": {str(k): encode_argument(v) for k, v in value.items()}}
    raise TypeError(f"the grader cannot send a {type(value).__name__} to a submission")


def decode_answer(data: Any, child: Child, depth: int = 0) -> Any:
    """An answer sent by the child, rebuilt from data (tensors through ``weights_only`` loading)."""
    import numpy as np
    import torch

    from kdlib import theory

    if not isinstance(data, dict) or depth > 20:
        return Unsupported("malformed")
    if "v" in data and (data["v"] is None or type(data["v"]) in (bool, int, str)):
        return data["v"]
    if "f" in data and isinstance(data["f"], str):
        try:
            return float(data["f"])
        except ValueError:
            return Unsupported("malformed float")
    if data.get("ellipsis") is True:
        return Ellipsis
    if "tensor" in data:
        try:
            value = torch.load(io.BytesIO(base64.b64decode(data["tensor"])), weights_only=True)
        except Exception:  # noqa: BLE001 - whatever it is, it is not a tensor
            return Unsupported("malformed tensor")
        return value if type(value) is torch.Tensor else Unsupported("malformed tensor")
    if "ndarray" in data:
        inner = decode_answer(data["ndarray"], child, depth + 1)
        if not isinstance(inner, torch.Tensor):
            return Unsupported("malformed array")
        array = inner.numpy()
        return array.reshape(()).item() if data.get("scalar") else array
    if "problem" in data and isinstance(data["problem"], list) and len(data["problem"]) == 2:
        marginal, bayes = (decode_answer(part, child, depth + 1) for part in data["problem"])
        try:
            return theory.DiscreteProblem(np.asarray(marginal), np.asarray(bayes))
        except Exception:  # noqa: BLE001
            return Unsupported("DiscreteProblem")
    if "list" in data and isinstance(data["list"], list):
        return [decode_answer(v, child, depth + 1) for v in data["list"]]
    if "tuple" in data and isinstance(data["tuple"], list):
        return tuple(decode_answer(v, child, depth + 1) for v in data["tuple"])
    if "dict" in data and isinstance(data["dict"], dict):
        return {str(k): decode_answer(v, child, depth + 1) for k, v in data["dict"].items()}
    if "function" in data:
        return RemoteFunction(child, str(data.get("name", "")) or child.current, str(data["function"]))
    return Unsupported(str(data.get("unsupported", "object")))


class RemoteFunction:
    """The student's function, as the grader's checker sees it: calling it sends the arguments
    to the child as data and returns the child's result, rebuilt from data."""

    def __init__(self, child: Child, name: str, shown: str) -> None:
        self.child, self.name, self.__name__ = child, name, shown

    def __call__(self, *args: Any) -> Any:
        reply = self.child.request({"op": "call", "name": self.name, "args": [encode_argument(a) for a in args]})
        if "error" in reply:
            if reply["error"] == "NotImplementedError":
                raise NotImplementedError
            raise RuntimeError(f"{reply['error']}: {reply.get('message', '')}")
        value = decode_answer(reply.get("value"), self.child)
        if "grads" in reply:
            value = with_gradient(value, args, reply["grads"], self.child)
        return value

    def __repr__(self) -> str:
        return f"<function {self.__name__}>"


def with_gradient(value: Any, args: tuple[Any, ...], grads: Any, child: Child) -> Any:
    """The child's result as a tensor that carries, with respect to the checker's arguments that
    require a gradient, the gradient of its sum that the child computed (a result with no path
    to them carries none): what a checker of a loss's gradient asks of it."""
    import torch

    if type(value) is not torch.Tensor or not isinstance(grads, list):
        return value
    followed = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    value = value.clone().requires_grad_(True)  # a leaf: no path to the arguments
    if len(grads) != len(followed):
        return value
    terms = []
    for arg, data in zip(followed, grads):
        grad = decode_answer(data, child) if data is not None else None
        if type(grad) is torch.Tensor and grad.shape == arg.shape:
            terms.append((arg * grad.to(arg.dtype)).sum())
    if not terms:
        return value
    surrogate = torch.stack(terms).sum()
    return value.detach() + (surrogate - surrogate.detach()) / value.numel()


def limit_child() -> None:
    """In the child, before it runs: its own process group (killed whole on a time-out), a
    CPU-time and a memory limit."""
    import resource

    os.setsid()
    cpu = int(os.environ.get("KDLIB_GRADING_CPU_S", "600"))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    except (ValueError, OSError):
        pass


class Child:
    """One question's child process: started in a fresh empty folder, fed the setup and the
    submission's cells, then asked for values and calls; killed on any time-out."""

    def __init__(self, setup: str, cells: list[str], timeout_s: float) -> None:
        self.timeout_s, self.current = timeout_s, ""
        self.folder = tempfile.TemporaryDirectory(prefix="kdlib-grading-")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.folder.name,
               "OMP_NUM_THREADS": "1", "KDLIB_THREADS": "1", "KDLIB_DOWNLOAD": "0", "TQDM_DISABLE": "1",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
        for name in ("KDLIB_DATA", "KDLIB_CACHE", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                     "MKL_ENABLE_INSTRUCTIONS"):  # the kernels' caps: the child computes as its parent
            if name in os.environ:
                env[name] = os.environ[name]
        self.process = subprocess.Popen([sys.executable, "-I", "-c", CHILD], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.folder.name,
                                        env=env, text=True, preexec_fn=limit_child)
        try:
            self.send({"setup": setup, "cells": cells})
            if not self.receive().get("ready"):
                raise GradingError("the submission's process did not get ready")
        except BaseException:
            self.close()  # no process and no scratch folder left behind
            raise

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise GradingError("the submission's process has ended") from exc

    def receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        out = self.process.stdout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise GradingError(f"the submission took longer than {self.timeout_s:g} s")
            ready, _, _ = select.select([out], [], [], left)
            if ready:
                line = out.readline()
                if not line:
                    raise GradingError("the submission's process ended (a crash, or a limit reached)")
                try:
                    reply = json.loads(line)
                except json.JSONDecodeError:
                    return {}
                return reply if isinstance(reply, dict) else {}

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.receive()

    def value(self, name: str) -> Any:
        self.current = name
        reply = self.request({"op": "get", "name": name})
        if not reply.get("defined"):
            return Ellipsis  # undefined: as if still the placeholder
        value = reply.get("value")
        if isinstance(value, dict) and "function" in value:
            return RemoteFunction(self, name, str(value["function"]))
        return decode_answer(value, self)

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def close(self) -> None:
        self.kill()
        self.folder.cleanup()


@dataclass(frozen=True)
class Score:
    """One question's score and why."""

    question: str
    points: float
    possible: float
    message: str


def submission_cells(path: Path) -> list[str]:
    """The code cells of a submission notebook, without the assignment's setup cell (the grader
    runs its own) and without Otter's calls (``grader.check``, ``import otter``)."""
    notebook = nbformat.read(path, as_version=4)
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        source = cell.source
        if "otter.Notebook(" in source:
            continue  # the setup cell: the grader uses the assignment's own setup
        lines = [line for line in source.splitlines()
                 if not line.lstrip().startswith(("grader.check", "import otter", "%pip", "!pip"))]
        cells.append("\n".join(lines))
    return cells


def checker_context(starter: str) -> str:
    """The assignment's own starter without its answer statements and its checker call: the
    lines that prepare the checker's other arguments (``expected = ...``, ``teacher = ...``),
    run by the grader with its own setup, never the submission's version of them."""
    import ast

    from kdlib.course.assignments import is_answer

    tree = ast.parse(starter)
    keep = [node for node in tree.body if not is_answer(node) and not (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name) and node.value.func.id.startswith("check_"))]
    return ast.unparse(ast.Module(body=keep, type_ignores=[]))


def grade_question(question: Any, setup: str, cells: list[str], timeout_s: float) -> Score:
    """Score one autograded question: the answers from a child, the verdict from a fresh
    checker called here, with data from this process's own setup."""
    from kdlib.course import checks

    try:
        child = Child(setup, cells, timeout_s)
    except GradingError as exc:
        return Score(question.name, 0.0, question.points, str(exc))
    try:
        own: dict[str, Any] = {"__name__": "__grading__"}
        exec(compile(setup, "setup", "exec"), own)  # the grader's own data: never the submission's
        exec(compile(checker_context(question.starter), "starter", "exec"), own)  # noqa: S102 - the course's code
        scope = {**own, **vars(checks)}
        scope.update({name: child.value(name) for name in question.answers})
        verdict = eval(question.call, scope)  # noqa: S307 - the assignment's own checker call
        ok = type(verdict) is checks.Verdict and verdict.ok is True
        return Score(question.name, float(question.points) if ok else 0.0, question.points,
                     verdict.message if type(verdict) is checks.Verdict else "the checker gave no verdict")
    except GradingError as exc:
        return Score(question.name, 0.0, question.points, str(exc))
    finally:
        child.close()


def grade_submission(submission: Path, chapter: str | None = None, root: Path | None = None,
                     timeout_s: float = TIMEOUT_S, only: set[str] | None = None) -> list[Score]:
    """Every autograded question of ``chapter`` (default: the submission's file name) scored
    for ``submission``, each in its own child process (``only``: just the questions so named,
    e.g. ``{"ex_no_t2"}``)."""
    from kdlib.course.assignments import SETUP, questions
    from kdlib.course.editions import ROOT

    root = Path(root or ROOT)
    chapter = chapter or Path(submission).stem
    source = root / "chapters" / f"{chapter}.ipynb"
    if chapter not in SETUP or not source.exists():
        raise GradingError(f"no chapter {chapter!r}: name the submission after its chapter (e.g. 02_losses.ipynb) "
                           "or pass --chapter")
    cells = submission_cells(Path(submission))
    return [grade_question(q, SETUP[chapter], cells, timeout_s) for q in questions(source)
            if q.autograded and (only is None or q.name in only)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.course.grading", description=__doc__.splitlines()[0])
    parser.add_argument("submission", type=Path)
    parser.add_argument("--chapter", default=None, help="the chapter (default: the submission's file name)")
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S)
    args = parser.parse_args(argv)
    try:
        scores = grade_submission(args.submission, args.chapter, timeout_s=args.timeout_s)
    except (GradingError, OSError, nbformat.reader.NotJSONError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for score in scores:
        print(f"{score.question}: {score.points:g}/{score.possible:g}  {score.message[:100]}")
    print(f"total: {sum(s.points for s in scores):g}/{sum(s.possible for s in scores):g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
