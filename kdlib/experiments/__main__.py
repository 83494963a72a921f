"""Command-line runner: ``python -m kdlib.experiments {mnist,cifar10,regimes} --profile full``.

``python -m kdlib.experiments manifest`` records the sizes and checksums of the files under
``results/`` in the package, for :func:`kdlib.experiments.published_file` to verify downloads.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from kdlib.experiments import RESULTS_DIR
from kdlib.profile import PROFILES, current_profile

EXPERIMENTS = ("mnist", "cifar10", "regimes", "cifar10-precision", "algorithms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.experiments",
                                     description="Run (or resume) an experiment of the course.")
    parser.add_argument("experiment", choices=(*EXPERIMENTS, "manifest"))
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="scale (default: KDLIB_PROFILE, else quick)")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file (default: results/<experiment>_<profile>.json); "
                             "rows already in it are not recomputed")
    parser.add_argument("--time-budget-s", type=float, default=None,
                        help="start no new row after this many seconds (rerun to resume)")
    parser.add_argument("--no-inference", action="store_true",
                        help="skip the CPU inference timings (e.g. on a GPU machine)")
    parser.add_argument("--inference-only", action="store_true",
                        help="train nothing; only add the CPU inference timings to the result file")
    args = parser.parse_args(argv)
    if args.experiment == "manifest":
        from kdlib.experiments import write_manifest

        print(f"wrote {write_manifest()}")
        return 0
    profile = args.profile or current_profile()
    stem = {"regimes": "mnist_regimes", "cifar10-precision": "cifar10_precision"}.get(args.experiment,
                                                                                   args.experiment)
    out = args.out or RESULTS_DIR / f"{stem}_{profile}.json"
    command = "python -m kdlib.experiments " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.experiment == "mnist":
        from kdlib.experiments.mnist import run_mnist

        data = run_mnist(profile, out=out, command=command)
    elif args.experiment == "cifar10-precision":
        from kdlib.experiments.cifar import run_precision_check

        data = run_precision_check(profile, out=out, command=command)
    elif args.experiment == "algorithms":
        from kdlib.experiments.algorithms import run_algorithms

        data = run_algorithms(profile, out=out, command=command)
    elif args.experiment == "regimes":
        from kdlib.experiments.regimes import run_regimes

        data = run_regimes(profile, out=out, command=command, time_budget_s=args.time_budget_s)
    else:
        from kdlib.experiments.cifar import TABLE2, run_cifar

        data = run_cifar(profile, out=out, command=command, time_budget_s=args.time_budget_s,
                         inference=not args.no_inference, rows=() if args.inference_only else TABLE2)
    print(f"wrote {out} ({len(data['rows'])} rows, {data.get('wall_s', 0):.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
