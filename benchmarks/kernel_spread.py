"""How far Table 1's rows move when only the CPU's matrix kernels change: the tolerance for stacks.

    python benchmarks/kernel_spread.py [--profile full]

Trained one at a time, a student's rows (test accuracy, agreement with its teacher) depend on the
last bits of every matrix product, and those bits depend on the kernels PyTorch picks for the CPU.
Over thousands of steps such differences grow into different networks. Trained in a stack
(:mod:`kdlib.stacked`), the same student takes the same steps with its products computed by
batched kernels, so its rows move in the same way. How far is "the same way"?

This script measures it on one machine, with one set of teachers (trained once, into a fresh
checkpoint cache, and loaded by every run):

1. the students one at a time (``--one-at-a-time --workers 2``), PyTorch's default kernels (on
   this CPU, AVX-512);
2. the same command with the AVX2 kernels (``MKL_ENABLE_INSTRUCTIONS=AVX2`` for MKL, which
   computes the MLPs' matrix products, and ``ATEN_CPU_CAPABILITY=avx2``,
   ``ONEDNN_MAX_CPU_ISA=AVX2`` for the rest): the same code and data, other last bits. (The two
   settings without MKL's leave a matrix product's bits as they were on this machine: the
   quick profile's rows came out identical.)
3. the students in stacks (the default command, one process), default kernels.

The criterion, set before this script first ran: **a stacked row is within tolerance when its
difference from run 1 is no larger than the largest difference between runs 2 and 1 over all
student rows** (test accuracy and test agreement, in percentage points). That is, stacking
may move a row no further than a change of kernels alone moves the rows of the one-at-a-time
path. The file keeps every row's differences, their spread, and whether the criterion holds.

Written with provenance to ``results/benchmark_kernel_spread_<profile>.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from workers import accuracy_differences, largest_differences, rows, run, spread

from kdlib.experiments import RESULTS_DIR
from kdlib.results import atomic_write_json, new_provenance

AVX2 = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out or RESULTS_DIR / f"benchmark_kernel_spread_{args.profile}.json")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "TQDM_DISABLE": "1", "KDLIB_CACHE": str(folder / "cache")}
        for name in ("OMP_NUM_THREADS", "KDLIB_THREADS", *AVX2):
            env.pop(name, None)
        paths = {name: folder / f"{name}.json" for name in ("default", "avx2", "stacked")}
        seconds = {"default": run(args.profile, False, 2, paths["default"], env),  # trains the teachers too
                   "avx2": run(args.profile, False, 2, paths["avx2"], {**env, **AVX2}),
                   "stacked": run(args.profile, True, 1, paths["stacked"], env)}
        for name, s in seconds.items():
            print(f"{name}: {s:.1f} s", flush=True)
        reference = rows(paths["default"])
        kernels, stacked = rows(paths["avx2"]), rows(paths["stacked"])
        teachers_shared = all(kernels[k] == ref and stacked[k] == ref for k, ref in reference.items()
                              if "spec" not in ref)
    tolerance = largest_differences(kernels, reference)
    stacking = largest_differences(stacked, reference)
    by_row = {"avx2 kernels minus default, one at a time": accuracy_differences(kernels, reference),
              "stacked minus one at a time, default kernels": accuracy_differences(stacked, reference)}
    result = {
        "provenance": new_provenance(f"python benchmarks/kernel_spread.py --profile {args.profile}",
                                     profile=args.profile, cpu_count=os.cpu_count()),
        "seconds": seconds, "teachers_shared": teachers_shared,
        "kernel_largest_difference_points": tolerance,
        "stacked_largest_difference_points": stacking,
        "stacked_within_kernel_spread": all(stacking[f] <= tolerance[f] for f in tolerance),
        "accuracy_differences_points": by_row,
        "accuracy_difference_spread": {name: spread(values) for name, values in by_row.items()},
    }
    atomic_write_json(out, result)
    print(f"teachers shared: {teachers_shared}")
    print(f"kernels alone, largest differences (points): {tolerance}")
    print(f"stacked, largest differences (points): {stacking}")
    print(f"within the kernel spread: {result['stacked_within_kernel_spread']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
