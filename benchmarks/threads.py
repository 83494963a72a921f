"""Training speed with 1 and 2 threads, on an idle machine and with one core kept busy.

    python benchmarks/threads.py [--repeats 3]

PyTorch runs each operation on all its threads and waits for the slowest. When another program
keeps one of the two cores busy, a two-thread run keeps waiting for the thread that shares a
core with it: for small networks this can be many times slower than one thread. This script
measures kdlib's training loop (one epoch of :func:`kdlib.train.train`) for three workloads:

* the MNIST student (784-300-10, batch 32, 20,000 images, distilled from precomputed logits);
* the MNIST teacher (784-1200-1200-10, batch 32, 5,000 images);
* the CIFAR-10 ideal student (blocks [1, 1, 1, 1], stride 2, the full profile's width,
  batch 512, 1,024 images, with kdlib's automatic precision).

Each is run with 1 and 2 threads, first on the machine as it is ("idle"; run it when nothing else
is running), then while a busy loop that this script starts (and stops) occupies one core.
The runs are interleaved and repeated; the medians and their ratios go to
``results/benchmark_threads.json``, with the wall time of the whole ``quick`` MNIST experiment
(chapter 5's live run, with kdlib's own thread choice) in both conditions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch

from kdlib.augment import ImageBatchTransform
from kdlib.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10, load_mnist, normalize
from kdlib.experiments import RESULTS_DIR, cifar
from kdlib.models import cifar_resnet, mlp
from kdlib.precision import use_bfloat16
from kdlib.results import atomic_write_json, new_provenance
from kdlib.threads import THREADS_BY_WORK
from kdlib.train import TrainConfig, train

BUSY_LOOP = "while True: pass"


def workloads() -> dict[str, Callable[[], float]]:
    """Name -> a function that trains one epoch and returns samples/s."""
    mnist = load_mnist()
    x = normalize(mnist.train_images[:20_000], mnist.mean, mnist.std)
    y = mnist.train_labels[:20_000]
    soft = torch.randn(len(x), 10)
    data = load_cifar10()
    width = cifar.SCALES["full"].width
    transform = ImageBatchTransform(CIFAR10_MEAN, CIFAR10_STD, augment=True)
    bf16 = use_bfloat16(torch.device("cpu"))

    def student() -> float:
        torch.manual_seed(0)
        config = TrainConfig(epochs=1, batch_size=32, lr=0.02, temperature=4.0, label_weight=0.5)
        return train(mlp([300]), x, y, config, teacher_logits=soft).samples_per_s

    def teacher() -> float:
        torch.manual_seed(0)
        return train(mlp([1200, 1200], dropout=0.2), x[:5_000], y[:5_000],
                     TrainConfig(epochs=1, batch_size=32, lr=0.02)).samples_per_s

    def resnet() -> float:
        torch.manual_seed(0)
        model = cifar_resnet((1, 1, 1, 1), stride=2, width=width).to(memory_format=torch.channels_last)
        config = TrainConfig(epochs=1, batch_size=512, lr=0.2, mixed_precision=bf16)
        return train(model, data.train_images[:1_024], data.train_labels[:1_024], config,
                     batch_transform=transform).samples_per_s

    return {"MNIST student (MLP 300)": student, "MNIST teacher (MLP 1200-1200)": teacher,
            f"CIFAR-10 ideal student (ResNet, width {width:g})": resnet}


def measure(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict[str, float]]:
    """Median samples/s of every workload with 1 and 2 threads (interleaved, after a warm-up)."""
    samples: dict[str, dict[int, list[float]]] = {name: {1: [], 2: []} for name in runs}
    for name, run in runs.items():
        torch.set_num_threads(1)
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            for threads in (1, 2):
                torch.set_num_threads(threads)
                samples[name][threads].append(run())
    return {name: {f"{t}_threads": statistics.median(v) for t, v in by.items()} for name, by in samples.items()}


def quick_mnist_seconds() -> float:
    """Wall time of the whole quick-profile MNIST experiment (chapter 5's live run)."""
    from kdlib.experiments.mnist import run_mnist

    return run_mnist("quick", progress=False)["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = workloads()
    results = {"idle": measure(runs, args.repeats)}
    quick = {"idle": quick_mnist_seconds()}
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        results["one core busy"] = measure(runs, args.repeats)
        quick["one core busy"] = quick_mnist_seconds()
    finally:
        busy.kill()
        busy.wait()
    print(f"quick MNIST experiment: {quick['idle']:.0f} s idle, {quick['one core busy']:.0f} s with one core busy")
    for condition, by in results.items():
        for name, rates in by.items():
            rates["2_over_1"] = rates["2_threads"] / rates["1_threads"]
            print(f"{condition:>14} | {name:<44} 1 thread {rates['1_threads']:>9,.0f}/s | "
                  f"2 threads {rates['2_threads']:>9,.0f}/s | ratio {rates['2_over_1']:.2f}")
    out = RESULTS_DIR / "benchmark_threads.json"
    atomic_write_json(out, {"benchmark": "threads", "provenance": new_provenance(repeats=args.repeats),
                            "kdlib_choice": THREADS_BY_WORK, "results": results,
                            "quick_mnist_experiment_s": quick})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
