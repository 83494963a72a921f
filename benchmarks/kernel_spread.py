"""How far Table 1's rows move when only the CPU's matrix kernels change.

    python benchmarks/kernel_spread.py [--profile full]

A student's rows (test accuracy, agreement with its teacher) depend on the last bits of every
matrix product, and those bits depend on the kernels PyTorch picks for the CPU. Over thousands
of steps such differences grow into different networks. Table 1's rows do not depend on how
its students are grouped or shared out (``benchmarks/workers.py`` checks they are the same, bit
for bit); they do depend on the machine. How far?

This script measures it on one machine, with one set of teachers (trained once, into a fresh
checkpoint cache, and loaded by the second run), running the default command (students in
stacks) twice:

1. with PyTorch's default kernels (on this CPU, AVX-512);
2. with the AVX2 kernels (``MKL_ENABLE_INSTRUCTIONS=AVX2`` for MKL, which computes the MLPs'
   matrix products, and ``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` for the
   rest): the same code and data, other last bits. (The two settings without MKL's leave a
   matrix product's bits as they were on this machine: the quick profile's rows came out
   identical.)

The file keeps every student row's accuracy difference, their spread and the largest
differences in test accuracy and in test agreement (percentage points): what "the same row on
another machine" can mean, and why a chapter prints a trained network's numbers from a result
file rather than from a live run.

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
        paths = {name: folder / f"{name}.json" for name in ("default", "avx2")}
        seconds = {"default": run(args.profile, True, 1, paths["default"], env),  # trains the teachers too
                   "avx2": run(args.profile, True, 1, paths["avx2"], {**env, **AVX2})}
        for name, s in seconds.items():
            print(f"{name}: {s:.1f} s", flush=True)
        reference, kernels = rows(paths["default"]), rows(paths["avx2"])
        teachers_shared = all(kernels[k] == ref for k, ref in reference.items() if "spec" not in ref)
    largest = largest_differences(kernels, reference)
    by_row = {"avx2 kernels minus default": accuracy_differences(kernels, reference)}
    result = {
        "provenance": new_provenance(f"python benchmarks/kernel_spread.py --profile {args.profile}",
                                     profile=args.profile, cpu_count=os.cpu_count()),
        "seconds": seconds, "teachers_shared": teachers_shared,
        "kernel_largest_difference_points": largest,
        "accuracy_differences_points": by_row,
        "accuracy_difference_spread": {name: spread(values) for name, values in by_row.items()},
    }
    atomic_write_json(out, result)
    print(f"teachers shared: {teachers_shared}")
    print(f"kernels alone, largest differences (points): {largest}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
