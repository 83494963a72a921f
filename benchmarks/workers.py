"""Table 1's wall time: students one at a time or in stacks, on one process or two.

    python benchmarks/workers.py [--profile quick] [--rounds 3] [--cold-runs 1] [--out FILE]

``python -m kdlib.experiments mnist`` trains Table 1's students in stacks of one shape
(:mod:`kdlib.stacked`, the default; two threads in one process) or one at a time
(``--one-at-a-time``: each student a stack of its own, on one thread), in one process or
shared out over two (``--workers 2``, one per core, one thread each).

First, the default command as a reader runs it, with its inference timings, into an empty
checkpoint cache: the end-to-end time of the profile, teachers included; ``--cold-runs N``
runs it N times, each from its own empty cache (``end_to_end_runs_s``; ``end_to_end_s`` is
their median, and ``end_to_end_runs_equal`` says whether they made the same rows).
``--baseline REV`` alternates each of those runs with one of the code at git revision REV
(checked out in a temporary worktree, from its own empty cache): on a shared machine whose
speed drifts, the ratio of the two medians (``baseline.ratio_over_this``) says what the code
changed, where an absolute time says as much about the machine's hour.
Then each round runs the four variants into fresh result files, without the inference
timings, loading the teachers that first run put in the cache, in the order of
:data:`VARIANTS`, reversed in every other round (with one round, nothing is interleaved: the
file says so). The file records every wall time, the medians and their ratios against the
one-at-a-time single process.

Rows (timings aside) are compared, for equality, with those of the one-at-a-time single
process of the first round. The claim, set before this version first ran: **every variant in
every round makes the same rows, bit for bit** (a student takes the same steps alone or in a
stack, on one thread or two: :mod:`kdlib.stacked`). The first run's rows, teachers trained
there, are also compared with the committed ``results/mnist_<profile>.json``: equal when that
file is what the default command makes on this machine (``committed_file_reproduced``; the
largest differences are kept either way).

Written with provenance to ``results/benchmark_workers.json`` (``--out`` for another file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kdlib.experiments import RESULTS_DIR
from kdlib.results import atomic_write_json, new_provenance

TIMING_FIELDS = {"train_wall_s", "samples_per_s", "stack"}
VARIANTS = {"one at a time, 1 process": (False, 1), "one at a time, 2 processes": (False, 2),
            "stacked, 1 process": (True, 1), "stacked, 2 processes": (True, 2)}
REFERENCE = "one at a time, 1 process"


def run(profile: str, stacked: bool, workers: int, out: Path, env: dict[str, str], inference: bool = False,
        code: Path | None = None) -> float:
    """Wall time of one run of the experiment into ``out`` (with the kdlib of the checkout
    ``code`` instead of this one's, if given)."""
    command = [sys.executable, "-m", "kdlib.experiments", "mnist", "--profile", profile, "--out", str(out)]
    command += ([] if inference else ["--no-inference"]) + ([] if stacked else ["--one-at-a-time"])
    command += ["--workers", str(workers)] if workers > 1 else []
    if code is not None:
        env = {**env, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, cwd=code)
    return time.perf_counter() - start


def rows(path: Path) -> dict:
    """The student and teacher rows of a result file, without their timings."""
    data = json.loads(path.read_text())["rows"]
    return {k: {f: v for f, v in row.items() if f not in TIMING_FIELDS} for k, row in data.items()}


def accuracy_differences(rows: dict, reference: dict) -> dict[str, float]:
    """Per student row: its test accuracy minus the reference's (percentage points)."""
    return {k: 100 * (rows[k]["accuracy"] - ref["accuracy"]) for k, ref in reference.items()
            if "spec" in ref and k in rows}


def spread(differences: dict[str, float]) -> dict[str, float]:
    values = list(differences.values())
    return {"rows": len(values), "mean": statistics.fmean(values), "sd": statistics.stdev(values),
            "largest_absolute": max(map(abs, values))}


def largest_differences(rows: dict, reference: dict) -> dict[str, float]:
    """The largest difference, over the student rows, in test accuracy and in test agreement
    with the teacher (percentage points)."""
    students = [k for k, row in reference.items() if "spec" in row]
    if rows.keys() != reference.keys():
        raise SystemExit("the two runs made different rows")
    return {field: max(100 * abs(rows[k][key] - reference[k][key]) if key == "accuracy" else
                       100 * abs(rows[k][key]["agreement"] - reference[k][key]["agreement"]) for k in students)
            for field, key in (("accuracy", "accuracy"), ("agreement", "fidelity_test"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=1,
                        help="end-to-end runs, each from an empty cache (the file keeps each and their median)")
    parser.add_argument("--baseline", default=None,
                        help="a git revision whose end-to-end runs alternate with this code's (from empty caches)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_workers.json"))
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "TQDM_DISABLE": "1", "KDLIB_CACHE": str(folder / "cache")}
        for name in ("OMP_NUM_THREADS", "KDLIB_THREADS"):
            env.pop(name, None)
        baseline = None
        if args.baseline:
            baseline = folder / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline], check=True,
                           capture_output=True, cwd=Path(__file__).resolve().parents[1])
        cold_runs, baseline_runs = [], []  # the first run's cache serves the variants; the others have their own
        try:
            for i in range(args.cold_runs):
                cold_env = env if i == 0 else {**env, "KDLIB_CACHE": str(folder / f"cache{i}")}
                base_env = {**env, "KDLIB_CACHE": str(folder / f"baseline_cache{i}")}
                order = ["this", "baseline"] if i % 2 == 0 else ["baseline", "this"]
                for which in order if baseline is not None else ["this"]:
                    if which == "this":
                        cold_runs.append(run(args.profile, True, 1, folder / f"cold{i}.json", cold_env, True))
                        print(f"end to end, empty cache, run {i + 1}: {cold_runs[-1]:.1f} s", flush=True)
                    else:
                        baseline_runs.append(run(args.profile, True, 1, folder / f"base{i}.json", base_env, True,
                                                 code=baseline))
                        print(f"baseline {args.baseline}, run {i + 1}: {baseline_runs[-1]:.1f} s", flush=True)
        finally:
            if baseline is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], capture_output=True,
                               cwd=Path(__file__).resolve().parents[1])
        end_to_end = statistics.median(cold_runs)
        outputs: dict[str, list[Path]] = {name: [] for name in VARIANTS}
        for r in range(args.rounds):
            for name in (list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]):
                out = folder / f"round{r}_{len(outputs[name])}_{VARIANTS[name][0]}_{VARIANTS[name][1]}.json"
                times[name].append(run(args.profile, *VARIANTS[name], out, env))
                outputs[name].append(out)
                print(f"round {r}, {name}: {times[name][-1]:.1f} s", flush=True)
        reference = rows(outputs[REFERENCE][0])
        identical = {name: all(rows(p) == reference for p in paths) for name, paths in outputs.items()}
        cold = rows(folder / "cold0.json")
        colds_equal = all(rows(folder / f"cold{i}.json") == cold for i in range(args.cold_runs))
        published = RESULTS_DIR / f"mnist_{args.profile}.json"
        committed = rows(published) if published.exists() else None
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "provenance": new_provenance(f"python benchmarks/workers.py --profile {args.profile} --rounds {args.rounds}"
                                     f" --cold-runs {args.cold_runs}"
                                     + (f" --baseline {args.baseline}" if args.baseline else ""),
                                     profile=args.profile, cpu_count=os.cpu_count()),
        "interleaved": args.rounds > 1, "order": list(VARIANTS), "end_to_end_s": end_to_end,
        "end_to_end_runs_s": cold_runs, "end_to_end_runs_equal": colds_equal, "seconds": times,
        **({"baseline": {"revision": args.baseline, "end_to_end_runs_s": baseline_runs,
                         "median_s": statistics.median(baseline_runs),
                         "ratio_over_this": statistics.median(baseline_runs) / end_to_end}}
           if args.baseline else {}),
        "median_s": medians, "ratio_over_reference": {name: medians[REFERENCE] / m for name, m in medians.items()},
        "rows_identical_to_reference": identical, "all_rows_identical": all(identical.values()),
        "first_run_equals_reference": cold == reference,
    }
    if committed is not None:
        result["committed_file_reproduced"] = cold == committed
        result["largest_difference_from_committed_points"] = largest_differences(cold, committed)
    atomic_write_json(args.out, result)
    for name, m in medians.items():
        print(f"{name}: {m:.1f} s ({result['ratio_over_reference'][name]:.2f}x)")
    print(f"rows identical to the reference: {identical}; first run: {result['first_run_equals_reference']}")
    if committed is not None:
        print(f"committed file reproduced: {result['committed_file_reproduced']}, largest differences "
              f"(points): {result['largest_difference_from_committed_points']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
