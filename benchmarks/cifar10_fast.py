"""The fast CIFAR-10 recipe (:mod:`kdlib.fastnet`) on this machine: accuracy, time, GFLOP/s.

    python benchmarks/cifar10_fast.py [--seeds 0 1 2] [--epochs N] [--threads 2]
                                      [--out results/benchmark_cifar10_fast.json]

For each seed it trains the fast recipe's network on the 50,000 training images, evaluates the
test accuracy (without test-time augmentation) after every epoch, and at the end with the
recipe's test-time augmentation. A row records the training time (the per-epoch evaluations
excluded), the achieved GFLOP/s of training (:func:`kdlib.fastnet.training_flops` over the
training time), the epoch curve and the training time at which the test accuracy first reached
90% ("time to 90%"). The machine's matrix-product peak (a 2048x2048 product in float32 and
bfloat16, median of 10 after 3 warm-ups, at the same thread count) is measured at the start of
each run and recorded beside it, so that the achieved rate reads as a fraction of the peak.

Rows are saved as they finish (rerun to resume). Each trained network is cached as a verified
checkpoint under a hash of its recipe (:mod:`kdlib.checkpoints`), the teacher the chapters
distil from. The test set is only measured, never used to choose anything: the recipe's
hyper-parameters are airbench94's, re-expressed for a mean loss.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from kdlib.checkpoints import checkpoint_path, save_checkpoint, weights_digest
from kdlib.data import display_source, load_cifar10, normalize
from kdlib.experiments import RESULTS_DIR
from kdlib.fastnet import FastRecipe, fast_accuracy, teacher_key, train_fast, training_flops
from kdlib.precision import use_bfloat16
from kdlib.results import ResultFile, new_provenance
from kdlib.train import accuracy


def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of a ``size``-square matrix product in float32 and bfloat16 (median of ``repeats``)."""
    torch.set_num_threads(threads)
    peaks = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        peaks[name] = 2 * size ** 3 / statistics.median(times) / 1e9
    return peaks


def checkpoint_key(recipe: FastRecipe, seed: int, source: str) -> dict:
    """What identifies a fast-recipe teacher: its recipe, its seed and the data it saw."""
    return teacher_key(recipe, seed, source)


def run_seed(data, recipe: FastRecipe, seed: int, mixed: bool) -> tuple[dict, torch.nn.Module]:
    """Train one seed; the row to record and the trained network."""
    test = normalize(data.test_images, data.mean, data.std).contiguous(memory_format=torch.channels_last)
    curve, eval_s = [], [0.0]
    start = time.perf_counter()

    def after_epoch(epoch: int, model: torch.nn.Module) -> dict:
        t0 = time.perf_counter()
        trained_s = t0 - start - eval_s[0]  # training time so far, the evaluations left out
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            acc = 100.0 * accuracy(model, test, data.test_labels)
        eval_s[0] += time.perf_counter() - t0
        curve.append({"epoch": epoch, "train_s": trained_s, "test_accuracy": acc})
        print(f"seed {seed} epoch {epoch}: {acc:.2f}% after {curve[-1]['train_s']:.0f} s", flush=True)
        return {"test_accuracy": acc}

    model, log = train_fast(data, recipe, seed=seed, on_epoch=after_epoch, mixed_precision=mixed)
    train_s = log.wall_s - eval_s[0]
    reached = [c["train_s"] for c in curve if c["test_accuracy"] >= 90.0]
    row = {
        "seed": seed, "test_accuracy": fast_accuracy(model, data, recipe, mixed_precision=mixed),
        "test_accuracy_no_tta": curve[-1]["test_accuracy"], "train_s": train_s,
        "gflop_per_s": training_flops(recipe, len(data.train_images)) / train_s / 1e9,
        "time_to_90_s": reached[0] if reached else None, "curve": curve,
        "epoch_losses": log.epoch_losses, "weights": weights_digest(model),
    }
    return row, model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=FastRecipe().epochs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_cifar10_fast.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = replace(FastRecipe(), epochs=args.epochs)
    data = load_cifar10()
    mixed = use_bfloat16(torch.device("cpu"))
    peak = matmul_peak(args.threads)
    provenance = new_provenance(recipe=recipe.to_dict(), threads=args.threads, bfloat16=mixed,
                                data_source=display_source(data.source), profile="full")
    results = ResultFile(args.out, "benchmark_cifar10_fast", provenance)
    results.use_data_source(display_source(data.source))
    runs = results.data.setdefault("matmul_peak_gflop_per_s", [])
    runs.append({"threads": args.threads, **peak})
    results.set("matmul_peak_gflop_per_s", runs)
    for seed in args.seeds:
        row_id = f"fast/epochs={recipe.epochs}/seed={seed}"
        if results.has(row_id):
            continue
        row, model = run_seed(data, recipe, seed, mixed)
        row.update(epochs=recipe.epochs, threads=args.threads, bfloat16=mixed, matmul_peak_gflop_per_s=peak)
        save_checkpoint(checkpoint_path("fastnet", checkpoint_key(recipe, seed, data.source)), model,
                        checkpoint_key(recipe, seed, data.source), {"test_accuracy": row["test_accuracy"]})
        results.put(row_id, row)
        print(f"{row_id}: {row['test_accuracy']:.2f}% (TTA) in {row['train_s']:.0f} s, "
              f"{row['gflop_per_s']:.0f} GFLOP/s (peak bf16 {peak['bfloat16']:.0f})", flush=True)


if __name__ == "__main__":
    main()
