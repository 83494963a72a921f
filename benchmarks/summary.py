"""The performance table of CONTRIBUTING.md, generated from the benchmarks' result files.

    python benchmarks/summary.py                          # print it
    python benchmarks/summary.py --write CONTRIBUTING.md  # replace it between the markers

Every number is read from the benchmarks' result files in ``results/`` (:data:`FILES`);
``tests/test_layout.py`` fails when the file's table differs from what this prints.
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
FILES = ("benchmark_cifar10_fast.json", "benchmark_airbench94_reference.json", "benchmark_cifar10_recipes.json",
         "benchmark_workers.json", "benchmark_workers_full.json", "benchmark_stacked_seeds.json",
         "benchmark_max_norm.json")
CPU_EXPERIMENTS = {"cifar10-fast": "cifar10_fast_full.json", "cifar10-features": "cifar10_features_full.json",
                   "cifar10-large": "cifar10_large_full.json", "modern-cifar10": "modern_cifar10_full.json"}
"""The CIFAR-10 experiments on the fast teacher, whose committed files were made on a CPU."""


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
        first = [next((c["epoch"] for c in r["curve"] if c["test_accuracy"] >= 90.0), None) for r in rows]
        at = "/".join("-" if e is None else str(e) for e in first)
        lines += [
            f"| fast CIFAR-10 recipe, {'/'.join(map(str, epochs))} epochs, {n} seed(s): test accuracy "
            f"with test-time augmentation (mean ± sd, %) | {spread([r['test_accuracy'] for r in rows])} |",
            f"| the same, without test-time augmentation (mean ± sd, %) | "
            f"{spread([r['test_accuracy_no_tta'] for r in rows])} |",
            f"| its training time per network (min, mean ± sd) | {spread([r['train_s'] / 60 for r in rows], 1)} |",
            f"| its training rate (GFLOP/s, median) against the bfloat16 matrix-product peak | "
            f"{rate:.0f} of {peak:.0f} ({100 * rate / peak:.0f}%) |",
            f"| its time to 90% test accuracy without augmentation, measured after each epoch (min, median) | "
            + (f"{statistics.median(reached) / 60:.1f} ({len(reached)} of {n} seeds reached it, at epochs "
               f"{at} of {'/'.join(map(str, epochs))}) |"
               if reached else f"not reached by {n} seed(s) |"),
        ]
    lines += reference_rows(results) + recipe_rows(results) + cpu_experiment_rows(results)
    for workers in (results / "benchmark_workers.json", results / "benchmark_workers_full.json"):
        if workers.exists():
            lines += workers_rows(json.loads(workers.read_text()))
    stacked = results / "benchmark_stacked_seeds.json"
    if stacked.exists():
        data = json.loads(stacked.read_text())
        prov, rates = data["provenance"], data["images_per_s"]
        lines.append(f"| Table 1's student ({prov['student']}), {prov['seeds']} seeds stacked in one model "
                     f"(batched matrix products) against one seed at a time, {prov['threads']} thread(s), "
                     f"training steps only on random MNIST-shaped data (median images/s over all seeds, "
                     f"ratio) | {rates['stacked']:,.0f} against {rates['sequential']:,.0f} "
                     f"({data['ratio']:.2f}x) |")
    max_norm = results / "benchmark_max_norm.json"
    if max_norm.exists():
        data = json.loads(max_norm.read_text())
        rates = {k: v["median_samples_per_s"] for k, v in data["results"].items()}
        prov = data["provenance"]
        lines.append(f"| chapter 9's MNIST teacher, one pass over {prov['samples']:,} images on "
                     f"{prov['threads']} thread(s): max-norm as a projection after each step against "
                     f"a rescaling in the forward pass (median samples/s, their ratio) | "
                     f"{rates['projection']:,.0f} against {rates['forward renorm']:,.0f} "
                     f"({rates['projection'] / rates['forward renorm']:.2f}x) |")
    machines = set()
    for name in FILES:
        path = results / name
        if path.exists():
            env = json.loads(path.read_text())["provenance"]["environment"]
            machines.add(f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']}")
    note = ("Measured on " + "; ".join(sorted(machines)) + ", a shared machine whose other load was "
            "not controlled: read the times as those of one run.") if machines else ""
    return "\n".join(lines) + ("\n\n" + note if note else "")


def workers_rows(data: dict) -> list[str]:
    """Table 1 one student at a time or in stacks, on one process or two (benchmarks/workers.py)."""
    med, profile = data["median_s"], data["provenance"]["profile"]
    rounds = len(next(iter(data["seconds"].values())))
    timing = "one round" if rounds == 1 else f"median of {rounds} rounds"
    if "1 process" in med:  # a file written before stacks existed
        return [f"| Table 1 ({profile} profile), one process against two ({timing}, s, ratio) | "
                f"{med['1 process']:.1f} against {med['2 processes']:.1f} ({data['ratio_one_over_two']:.2f}x) |"]
    ratio = data["ratio_over_reference"]
    variants = ", ".join(f"{name} {med[name]:.0f} s ({ratio[name]:.2f}x)" for name in med)
    same = "the same, bit for bit" if data["all_rows_identical"] else "NOT all the same"
    reproduced = {True: "; the first run's equal the committed file's",
                  False: "; the first run's differ from the committed file's"}.get(
        data.get("committed_file_reproduced"), "")
    cold = data.get("end_to_end_runs_s", [data["end_to_end_s"]])
    cold_text = (f"one run, s) | {cold[0]:.0f}" if len(cold) == 1 else
                 f"median of {len(cold)} runs, each from an empty cache, and the runs, s) | "
                 f"{data['end_to_end_s']:.0f} ({', '.join(f'{t:.0f}' for t in cold)})")
    return [
        f"| Table 1 ({profile} profile), teachers cached, no inference timings ({timing}): students one at a "
        f"time or stacked (kdlib.stacked), one process or two; speed-up over one at a time in one process | "
        f"{variants} |",
        f"| Table 1 ({profile} profile) end to end as `python -m kdlib.experiments mnist` runs it (stacked, "
        f"teachers trained, inference timed; {cold_text} |",
        f"| its rows (timings aside), every variant and round against one at a time in one process | "
        f"{same}{reproduced} |",
    ]


def reference_rows(results: Path) -> list[str]:
    """airbench94's own code on the same data (benchmarks/airbench94_reference.py)."""
    path = results / "benchmark_airbench94_reference.json"
    if not path.exists():
        return []
    rows = list(json.loads(path.read_text())["rows"].values())
    epochs = "/".join(map(str, sorted({r["epochs"] for r in rows})))
    return [f"| airbench94's training loop ported to this CPU (benchmarks/airbench94_reference.py: bfloat16 "
            f"autocast, whitening on a random sample), same mirror, {epochs} epochs, {len(rows)} "
            f"seed(s): test accuracy with test-time augmentation (mean ± sd, %) | "
            f"{spread([r['test_accuracy'] for r in rows])} |"]


def recipe_rows(results: Path) -> list[str]:
    """Chapter 6's ResNet teacher against the fast recipe (benchmarks/cifar10_recipes.py)."""
    path = results / "benchmark_cifar10_recipes.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    resnet, fast = data["recipes"]["resnet"], data["recipes"]["fast"]

    def minutes(recipe: dict, target: str) -> str:
        m = recipe[f"minutes_to_{target}"]
        return f"not reached in its {recipe['epochs']} epochs" if m is None else f"{m:.0f}"

    old, prov = data["targets"]["resnet_final"], data["provenance"]
    return [
        f"| one epoch of 50,000 images, estimated from {prov['images']:,} images (median of {prov['rounds']} "
        f"rounds): chapter 6's ResNet teacher against the fast recipe (s, ratio) | "
        f"{resnet['epoch_s']:.0f} against {fast['epoch_s']:.0f} ({data['epoch_time_ratio']:.1f}x) |",
        f"| time to 90% test accuracy, one view, at that rate (min; epochs from the ResNet teacher's one "
        f"GPU-trained seed and the median of the fast recipe's seeds) | "
        f"{minutes(resnet, '90')} against {minutes(fast, '90')} |",
        f"| time to the ResNet teacher's final accuracy ({old:.1f}%, one view) at that rate, the same "
        f"way (min) | {minutes(resnet, 'resnet_final')} against {minutes(fast, 'resnet_final')} |",
    ]


def cpu_experiment_rows(results: Path) -> list[str]:
    """The wall time of the CIFAR-10 experiments' full-profile runs made on a CPU, from their
    result files (a file made on a GPU is left out)."""
    minutes = {}
    for name, file in CPU_EXPERIMENTS.items():
        path = results / file
        if path.exists():
            data = json.loads(path.read_text())
            env = data["provenance"]["environment"]
            if env.get("cuda_device") is None:
                minutes[name] = (data["wall_s"] / 60, env["cpu_count"])
    if not minutes:
        return []
    cores = "/".join(sorted({str(c) for _, c in minutes.values()}))
    each = ", ".join(f"{name} {m:.0f}" for name, (m, _) in minutes.items())
    total = sum(m for m, _ in minutes.values())
    return [f"| the CIFAR-10 experiments on the fast teacher, full profile, as committed, on a {cores}-core "
            f"CPU: wall time of the runs that wrote each file (min; a teacher read from the checkpoint cache "
            f"is not in it) | {each}; {total:.0f} in all |"]


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
