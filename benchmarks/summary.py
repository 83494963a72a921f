"""The performance table of CONTRIBUTING.md, generated from the benchmarks' result files.

    python benchmarks/summary.py                          # print it
    python benchmarks/summary.py --write CONTRIBUTING.md  # replace it between the markers

Every number is read from ``results/benchmark_cifar10_fast.json``,
``results/benchmark_workers.json`` (Table 1's quick profile), ``benchmark_workers_full.json`` (its
full profile) and ``results/benchmark_max_norm.json``; ``tests/test_layout.py`` fails when the file's table differs
from what this prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kdlib.course.layout import replace_between, write_generated

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- performance:begin (python benchmarks/summary.py --write CONTRIBUTING.md) -->"
END = "<!-- performance:end -->"


def fast_rows(results: Path) -> list[dict]:
    path = results / "benchmark_cifar10_fast.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["rows"].values())


def spread(values: list[float], digits: int = 2) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def table(results: Path = ROOT / "results") -> str:
    """The Markdown table (a row per measurement, a note on the machine under it)."""
    lines = ["| measurement | value |", "| --- | --- |"]
    rows = fast_rows(results)
    if rows:
        n, epochs = len(rows), sorted({r["epochs"] for r in rows})
        peak = statistics.median(r["matmul_peak_gflop_per_s"]["bfloat16"] for r in rows)
        rate = statistics.median(r["gflop_per_s"] for r in rows)
        reached = [r["time_to_90_s"] for r in rows if r["time_to_90_s"] is not None]
        lines += [
            f"| fast CIFAR-10 recipe, {'/'.join(map(str, epochs))} epochs, {n} seed(s): test accuracy "
            f"with test-time augmentation (mean ± sd, %) | {spread([r['test_accuracy'] for r in rows])} |",
            f"| the same, without test-time augmentation (%) | "
            f"{spread([r['test_accuracy_no_tta'] for r in rows])} |",
            f"| its training time per network (min, mean ± sd) | {spread([r['train_s'] / 60 for r in rows], 1)} |",
            f"| its training rate (GFLOP/s, median) against the bfloat16 matrix-product peak | "
            f"{rate:.0f} of {peak:.0f} ({100 * rate / peak:.0f}%) |",
            f"| its time to 90% test accuracy without augmentation (min, median) | "
            + (f"{statistics.median(reached) / 60:.1f} ({len(reached)} of {n} seeds reached it) |"
               if reached else f"not reached by {n} seed(s) |"),
        ]
    for workers in (results / "benchmark_workers.json", results / "benchmark_workers_full.json"):
        if not workers.exists():
            continue
        data = json.loads(workers.read_text())
        med = data["median_s"]
        lines.append(f"| Table 1 ({data['provenance']['profile']} profile), one process against two "
                     f"(median s, ratio) | {med['1 process']:.1f} against {med['2 processes']:.1f} "
                     f"({data['ratio_one_over_two']:.2f}x) |")
    max_norm = results / "benchmark_max_norm.json"
    if max_norm.exists():
        data = json.loads(max_norm.read_text())
        rates = {k: v["median_samples_per_s"] for k, v in data["results"].items()}
        prov = data["provenance"]
        lines.append(f"| chapter 9's MNIST teacher, one pass over {prov['samples']:,} images on "
                     f"{prov['threads']} thread(s): max-norm as a projection after each step against "
                     f"a rescaling in the forward pass (median samples/s, ratio) | "
                     f"{rates['projection']:,.0f} against {rates['forward renorm']:,.0f} "
                     f"({data['speedup']:.2f}x) |")
    machines = set()
    for name in ("benchmark_cifar10_fast.json", "benchmark_workers.json", "benchmark_workers_full.json",
                 "benchmark_max_norm.json"):
        path = results / name
        if path.exists():
            env = json.loads(path.read_text())["provenance"]["environment"]
            machines.add(f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']}")
    note = ("Measured on " + "; ".join(sorted(machines)) + ", a shared machine whose other load was "
            "not controlled: read the times as those of one run.") if machines else ""
    return "\n".join(lines) + ("\n\n" + note if note else "")


def replace_block(text: str, block: str) -> str:
    return replace_between(text, block, BEGIN, END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    if args.write:
        write_generated(args.write, table(), BEGIN, END)
    else:
        print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
