"""Command-line runner: ``python -m kdlib.experiments {mnist,cifar10,regimes,...} --profile full``.

``python -m kdlib.experiments manifest`` records the sizes and checksums of the files under
``results/`` in the package, for :func:`kdlib.experiments.published_file` to verify downloads.

Every experiment honours or refuses each flag: a flag that does not apply to it is refused with
a message, never ignored. An expected error (a bad flag, file or setting, missing data) prints
one line, ``error: ...``, and exits with status 2; a traceback means a bug in kdlib.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import traceback
from pathlib import Path

from kdlib.errors import PathError, UsageError
from kdlib.experiments import EXPERIMENT_STEMS, RESULTS_DIR, result_name
from kdlib.profile import PROFILES, SLOW_RUN_OPT_IN, current_profile

EXPERIMENTS = tuple(EXPERIMENT_STEMS)
FLAGS: dict[str, set[str]] = {
    "mnist": {"time_budget_s", "no_inference", "inference_only", "workers", "one_at_a_time"},
    "cifar10": {"time_budget_s", "no_inference", "inference_only", "workers"},
    "cifar10-precision": {"time_budget_s"},
    "regimes": {"time_budget_s", "workers"},
    "algorithms": {"time_budget_s", "parts"},
    "anchors": {"time_budget_s", "parts", "workers"},
    "modern": {"time_budget_s", "workers"},
    "modern-cifar10": {"time_budget_s", "workers"},
    "cifar10-fast": {"time_budget_s", "workers"},
    "cifar10-features": {"time_budget_s", "workers"},
    "cifar10-large": {"time_budget_s", "workers"},
    "manifest": set(),
}
"""The optional flags each command honours; any other is refused."""
DISTRIBUTED = ("mnist", "cifar10", "regimes", "anchors", "modern", "modern-cifar10", "cifar10-fast",
               "cifar10-features", "cifar10-large")
"""The experiments that run under torchrun, their rows shared out over the ranks (kdlib.distributed)."""
WHY_NOT = {
    "time_budget_s": "it cannot stop between rows; interrupt it (Ctrl-C) instead and rerun to resume",
    "no_inference": "it times no inference separately",
    "inference_only": "it times no inference separately",
    "parts": "it has no parts to choose from",
    "workers": "it runs in one process",
    "one_at_a_time": "only mnist trains its students in stacks",
}


def time_budget(text: str) -> float:
    """``--time-budget-s``: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def workers_count(text: str) -> int:
    """``--workers``: a whole number of processes >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of processes >= 1, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and status 2) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def parser() -> argparse.ArgumentParser:
    parse = Parser(prog="python -m kdlib.experiments",
                   description="Run (or resume) an experiment of the course.")
    parse.add_argument("experiment", choices=(*EXPERIMENTS, "manifest"))
    parse.add_argument("--profile", choices=PROFILES, default=None,
                       help="scale (default: KDLIB_PROFILE, else quick)")
    parse.add_argument("--out", type=Path, default=None,
                       help="result file (default: results/<experiment>_<profile>.json); "
                            "rows already in it are not recomputed")
    parse.add_argument("--time-budget-s", type=time_budget, default=None,
                       help="start no new row after this many seconds (rerun to resume)")
    parse.add_argument("--no-inference", action="store_true",
                       help="skip the CPU inference timings (e.g. on a GPU machine)")
    parse.add_argument("--inference-only", action="store_true",
                       help="train nothing; only add the CPU inference timings to the result file")
    parse.add_argument("--parts", default=None,
                       help="comma-separated parts to run (anchors: hinton,no3,only78,consistency; "
                            "algorithms: mnist-quantized,mnist-adversarial,cifar)")
    parse.add_argument("--workers", type=workers_count, default=None,
                       help="processes to share the rows out over, on this machine (e.g. 2: one per core; "
                            "what torchrun --standalone --nproc-per-node N does, without torchrun)")
    parse.add_argument("--one-at-a-time", action="store_true",
                       help="mnist: train each student alone (a stack of one, on one thread) instead of in "
                            "stacks of one shape (kdlib.stacked); the rows are the same, bit for bit")
    parse.add_argument("--yes", action="store_true",
                       help=f"start a run of many hours (the paper profile on a CPU); same as {SLOW_RUN_OPT_IN}=1")
    return parse


def refuse_flags(parse: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a message (status 2) for a flag the experiment does not honour."""
    given = {"time_budget_s": args.time_budget_s is not None, "no_inference": args.no_inference,
             "inference_only": args.inference_only, "parts": args.parts is not None,
             "workers": args.workers is not None, "one_at_a_time": args.one_at_a_time}
    for flag, on in given.items():
        if on and flag not in FLAGS[args.experiment]:
            why = "it trains nothing" if args.experiment == "manifest" else WHY_NOT[flag]
            parse.error(f"--{flag.replace('_', '-')} does not apply to {args.experiment} ({why}): leave it out")
    if args.experiment == "manifest" and (args.profile or args.out or args.yes):
        parse.error("manifest takes no --profile, --out or --yes: it records the files under results/")
    if args.no_inference and args.inference_only:
        parse.error("--no-inference and --inference-only contradict each other: pass one of them")


def chosen_parts(args: argparse.Namespace, parts: tuple[str, ...]) -> tuple[str, ...]:
    """``--parts a,b`` as a tuple (every part without the flag), refusing unknown names."""
    if args.parts is None:
        return parts
    chosen = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(parts))
    if unknown or not chosen:
        raise UsageError(f"--parts {args.parts!r}: the parts of {args.experiment} are {','.join(parts)}")
    return chosen


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; expected errors are raised, not printed."""
    parse = parser()
    args = parse.parse_args(argv)
    refuse_flags(parse, args)
    if args.experiment == "manifest":
        from kdlib.experiments import write_manifest

        print(f"wrote {write_manifest()}")
        return 0
    if args.yes:
        os.environ[SLOW_RUN_OPT_IN] = "1"
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    if args.workers is not None and args.workers > 1:
        if under_torchrun:
            raise UsageError("--workers starts its own processes: leave it out under torchrun (or leave torchrun out)")
        return spawn_workers(args.workers, sys.argv[1:] if argv is None else list(argv))
    if under_torchrun and args.experiment not in DISTRIBUTED:
        raise UsageError(f"{args.experiment} runs in one process: start it without torchrun (the experiments "
                         f"that share their rows over ranks are {', '.join(DISTRIBUTED)})")
    profile = args.profile or current_profile()
    out = (args.out or RESULTS_DIR / result_name(args.experiment, profile)).absolute()
    command = "python -m kdlib.experiments " + shlex.join(sys.argv[1:] if argv is None else argv)
    budget = args.time_budget_s
    if args.experiment == "mnist":
        from kdlib.experiments.mnist import run_mnist

        data = run_mnist(profile, out=out, command=command, time_budget_s=budget,
                         inference=not args.no_inference, train_rows=not args.inference_only,
                         stacked=not args.one_at_a_time)
    elif args.experiment == "cifar10-precision":
        from kdlib.experiments.cifar import run_precision_check

        data = run_precision_check(profile, out=out, command=command, time_budget_s=budget)
    elif args.experiment == "algorithms":
        from kdlib.experiments.algorithms import PARTS, run_algorithms

        data = run_algorithms(profile, out=out, command=command, time_budget_s=budget,
                              parts=chosen_parts(args, PARTS))
    elif args.experiment == "anchors":
        from kdlib.experiments.anchors import PARTS, run_anchors

        data = run_anchors(profile, out=out, command=command, time_budget_s=budget,
                           parts=chosen_parts(args, PARTS))
    elif args.experiment == "modern":
        from kdlib.experiments.modern import run_modern

        data = run_modern(profile, out=out, command=command, time_budget_s=budget)
    elif args.experiment == "modern-cifar10":
        from kdlib.experiments.modern_cifar import run_modern_cifar

        data = run_modern_cifar(profile, out=out, command=command, time_budget_s=budget)
    elif args.experiment in ("cifar10-fast", "cifar10-features", "cifar10-large"):
        from kdlib.experiments.cifar_fast import run_cifar_fast

        data = run_cifar_fast(profile, out=out, command=command, time_budget_s=budget, experiment=args.experiment)
    elif args.experiment == "regimes":
        from kdlib.experiments.regimes import run_regimes

        data = run_regimes(profile, out=out, command=command, time_budget_s=budget)
    else:
        from kdlib.experiments.cifar import TABLE2, run_cifar

        data = run_cifar(profile, out=out, command=command, time_budget_s=budget,
                         inference=not args.no_inference, rows=() if args.inference_only else TABLE2)
    if int(os.environ.get("RANK", "0") or 0) == 0:  # under torchrun, rank 0 wrote the file
        print(f"wrote {out} ({len(data['rows'])} rows, {data.get('wall_s', 0):.0f} s in all)")
    return 0


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn_workers(count: int, argv: list[str]) -> int:
    """Run this command in ``count`` processes on this machine, as ``torchrun --standalone
    --nproc-per-node count`` would: each gets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` and
    joins a gloo group on the loopback interface (:mod:`kdlib.distributed`); rank 0 writes the
    result file. If one process fails, the others are stopped. Returns rank 0's exit status
    (or the first failure's)."""
    import subprocess
    import time

    rest, skip = [], False
    for arg in argv:  # the same command, without --workers
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            rest.append(arg)
    port = free_port()
    processes = []
    for r in range(count):
        env = {**os.environ, "WORLD_SIZE": str(count), "RANK": str(r), "LOCAL_RANK": str(r),
               "LOCAL_WORLD_SIZE": str(count), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        processes.append(subprocess.Popen([sys.executable, "-m", "kdlib.experiments", *rest], env=env))
    try:
        while True:
            codes = [p.poll() for p in processes]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                for p in processes:
                    if p.poll() is None:
                        p.terminate()
                for p in processes:
                    p.wait()
                return failed[0]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        for p in processes:
            p.terminate()
        raise


def expected(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input (a one-line message suffices) rather than a bug in kdlib: one
    of kdlib's own error types, or a ValueError or FloatingPointError that kdlib's own checks
    raised (they say what is wrong and how to fix it)."""
    data = sys.modules.get("kdlib.data")  # not imported yet: exc cannot be one of its errors
    if isinstance(exc, (UsageError, PathError)) or (data is not None and isinstance(exc, data.DataError)):
        return True
    if isinstance(exc, (ValueError, FloatingPointError, FileNotFoundError)):
        frames = traceback.extract_tb(exc.__traceback__)
        package = str(Path(__file__).resolve().parents[1])
        return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(package)
    return False


def main(argv: list[str] | None = None) -> int:
    """Run the command; an expected error prints ``error: <message>`` to stderr and returns 2."""
    try:
        return run(argv)
    except Exception as exc:  # noqa: BLE001 - sorted into expected errors and bugs below
        if not expected(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
