"""Table 1 on one process against two: the wall time of ``python -m kdlib.experiments mnist``.

    python benchmarks/workers.py [--profile quick] [--rounds 3]

Each round runs the experiment into a fresh result file once in one process and once with
``--workers 2`` (the rows shared out over two processes, one per core), in alternating order,
after one warm-up run that puts the teachers in the checkpoint cache (so every timed run loads
them, as a rerun would). It writes the wall times, their medians and the ratio of the medians
(one process over two), with provenance, to ``results/benchmark_workers.json``, and checks that
every run's rows equal the first one-process run's (timings aside).
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

TIMING_FIELDS = {"train_wall_s", "samples_per_s"}


def run(profile: str, workers: int, out: Path, env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "kdlib.experiments", "mnist", "--profile", profile, "--no-inference",
               "--out", str(out)] + (["--workers", str(workers)] if workers > 1 else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def rows(path: Path) -> dict:
    data = json.loads(path.read_text())["rows"]
    return {k: {f: v for f, v in row.items() if f not in TIMING_FIELDS} for k, row in data.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_workers.json"))
    args = parser.parse_args(argv)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    times: dict[str, list[float]] = {"1 process": [], "2 processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run(args.profile, 1, folder / "warmup.json", env)  # fills the teacher checkpoint cache
        reference = rows(folder / "warmup.json")
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for workers in order:
                out = folder / f"round{r}_{workers}.json"
                seconds = run(args.profile, workers, out, env)
                times["1 process" if workers == 1 else "2 processes"].append(seconds)
                if rows(out) != reference:
                    raise SystemExit(f"the rows of {workers} process(es) in round {r} differ from one process's")
                print(f"round {r}, {workers} process(es): {seconds:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "provenance": new_provenance(f"python benchmarks/workers.py --profile {args.profile} --rounds {args.rounds}",
                                     profile=args.profile, cpu_count=os.cpu_count()),
        "interleaved": True, "rows_identical": True, "seconds": times, "median_s": medians,
        "ratio_one_over_two": medians["1 process"] / medians["2 processes"],
    }
    atomic_write_json(args.out, result)
    print(f"median: 1 process {medians['1 process']:.1f} s, 2 processes {medians['2 processes']:.1f} s, "
          f"ratio {result['ratio_one_over_two']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
