"""kdlib's two CIFAR-10 teacher recipes on this CPU, in one run: the ResNet teacher of chapter 6
against the fast recipe (:mod:`kdlib.fastnet`), as time per epoch and time to a given accuracy.

    python benchmarks/cifar10_recipes.py [--rounds 5] [--images 8192] [--threads 2]

Each round trains each recipe for one epoch on the same ``--images`` training images (the
recipes' own batch sizes, augmentation and bfloat16 autocast where the CPU has it), in
alternating order, after one warm-up round; the median rate of each gives its time for an epoch
of 50,000 images on this machine. The accuracies come from the recipes' full-length runs, read
from their result files:

* the ResNet teacher (``results/cifar10_full.json``, row ``teacher``): 40 epochs, trained on a
  lent GPU (the full profile was never trained on this CPU); its accuracy is known only at the
  end of its schedule;
* the fast recipe (``results/benchmark_cifar10_fast.json``): 20 epochs on this CPU, with the
  test accuracy (one view) after every epoch.

From these the script states, for each recipe, the epochs it needs to reach 90% test accuracy
and the ResNet teacher's own final one-view accuracy, and their time at this run's rate per
epoch: the same-run time to an accuracy the issue asks for. A recipe that never reached an
accuracy in its schedule is recorded as not reaching it (``null``), not extrapolated. Written,
with provenance, to ``results/benchmark_cifar10_recipes.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch

from kdlib.data import display_source, load_cifar10
from kdlib.experiments import RESULTS_DIR, cifar
from kdlib.fastnet import FastRecipe, train_fast
from kdlib.models import seeded
from kdlib.precision import use_bfloat16
from kdlib.results import atomic_write_json, new_provenance
from kdlib.train import train

EPOCH_IMAGES = 50_000


def resnet_epoch(images: torch.Tensor, labels: torch.Tensor, scale: cifar.CifarScale) -> float:
    """Seconds for one epoch of the ResNet teacher's recipe on ``images`` (the training loop's own time)."""
    device = torch.device("cpu")
    model = seeded(lambda: cifar.make_model(cifar.TEACHER_BLOCKS, "bottleneck", 1, scale.width, device), 0)
    config = cifar.train_config(scale, scale.teacher_epochs, 0, kd=False, device=device,
                                label_smoothing=scale.teacher_label_smoothing)
    config = replace(config, epochs=1, warmup_epochs=0)  # one epoch at the recipe's batch and precision
    return train(model, images, labels, config, batch_transform=cifar.augmenting()).wall_s


def fast_epoch(data, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds for one epoch of the fast recipe on ``images`` (the training loop's own time)."""
    return train_fast(data, replace(FastRecipe(), epochs=1), train_images=images, train_labels=labels)[1].wall_s


def epochs_to(curve: list[float], target: float) -> int | None:
    """The first epoch (1-based) whose accuracy is at least ``target``, or ``None``."""
    return next((i + 1 for i, acc in enumerate(curve) if acc >= target), None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_cifar10_recipes.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_cifar10()
    scale = cifar.SCALES["full"]
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(0))[:args.images]
    images, labels = data.train_images[order], data.train_labels[order]

    times: dict[str, list[float]] = {"resnet": [], "fast": []}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        pair = [("resnet", lambda: resnet_epoch(images, labels, scale)),
                ("fast", lambda: fast_epoch(data, images, labels))]
        for name, fn in (pair if round_ % 2 == 0 else pair[::-1]):
            seconds = fn()
            if round_:
                times[name].append(seconds)
            print(f"round {round_} {name}: {seconds:.2f} s", flush=True)
    epoch_s = {name: statistics.median(t) * EPOCH_IMAGES / args.images for name, t in times.items()}

    full = json.loads((RESULTS_DIR / "cifar10_full.json").read_text())
    teacher = full["rows"]["teacher"]
    fast = json.loads((RESULTS_DIR / "benchmark_cifar10_fast.json").read_text())
    target_old = 100 * teacher["accuracy_single_view"]
    recipes = {
        "resnet": {"epochs": teacher["config"]["epochs"], "final_accuracy_one_view": target_old,
                   "final_accuracy_flip": 100 * teacher["accuracy"],
                   "accuracy_from": "results/cifar10_full.json, row teacher (trained on a lent GPU)"},
        "fast": {"epochs": FastRecipe().epochs,
                 "accuracy_from": "results/benchmark_cifar10_fast.json (trained on this CPU)"},
    }
    targets = {"90": 90.0, "resnet_final": target_old}
    for name, target in targets.items():
        resnet_epochs = recipes["resnet"]["epochs"] if target <= target_old else None
        fast_epochs = [epochs_to([c["test_accuracy"] for c in row["curve"]], target) for row in fast["rows"].values()]
        reached = [e for e in fast_epochs if e is not None]
        recipes["resnet"][f"epochs_to_{name}"] = resnet_epochs
        recipes["fast"][f"epochs_to_{name}"] = statistics.median(reached) if len(reached) == len(fast_epochs) else None
        recipes["fast"][f"epochs_to_{name}_per_seed"] = fast_epochs
    for name, recipe in recipes.items():
        recipe["epoch_s"] = epoch_s[name]
        recipe["all_round_s"] = times[name]
        recipe["schedule_min"] = recipe["epochs"] * epoch_s[name] / 60
        for target in targets:
            e = recipe[f"epochs_to_{target}"]
            recipe[f"minutes_to_{target}"] = None if e is None else e * epoch_s[name] / 60
    atomic_write_json(args.out, {
        "benchmark": "cifar10_recipes",
        "provenance": new_provenance(threads=args.threads, rounds=args.rounds, images=args.images,
                                     bfloat16=use_bfloat16(torch.device("cpu")),
                                     data_source=display_source(data.source)),
        "targets": {"90": 90.0, "resnet_final": target_old},
        "recipes": recipes,
        "epoch_time_ratio": epoch_s["resnet"] / epoch_s["fast"],
    })
    for name, recipe in recipes.items():
        print(name, {k: v for k, v in recipe.items() if not isinstance(v, list)})


if __name__ == "__main__":
    main()
