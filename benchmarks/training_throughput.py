"""Training throughput of kdlib's loop against the conventional DataLoader loop.

    python benchmarks/training_throughput.py mnist    [--samples 10000] [--repeats 5] [--threads N]
    python benchmarks/training_throughput.py cifar10  [--samples 2560]  [--repeats 5] [--threads N]

Every loop trains the same student the same way (same model, optimiser, loss, batch size and
thread count) for one epoch over the same images:

* **kdlib**, as the experiments use it (:func:`kdlib.train.train`): the dataset is a tensor in
  memory (MNIST: normalised once, as floats; CIFAR-10: uint8, each mini-batch cropped, flipped
  and normalised as a whole by tensor operations, :mod:`kdlib.augment`); each mini-batch is
  drawn by indexing it;
* **per-image PIL** (the PyTorch tutorials' way): a ``Dataset`` that turns each image into a PIL
  image and applies torchvision's per-sample transforms (``ToTensor``, ``Normalize``; for
  CIFAR-10 also ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip``), batched by a
  ``DataLoader`` (``num_workers=0``, as on a 2-core machine);
* MNIST only, to separate the two things kdlib's loop changes: **DataLoader over tensors** (a
  ``DataLoader`` over a ``TensorDataset`` of the images normalised once: the data preparation
  of kdlib, the batching of the tutorials) and **bare indexing** (the shortest loop that indexes
  the in-memory tensors, with none of kdlib's checks or bookkeeping).

MNIST trains a 784-300-10 student by distillation from precomputed teacher logits; CIFAR-10 the
report's "ideal" ResNet student (blocks [1, 1, 1, 1], stride 2, width of the full profile) on
labels. All loops of one dataset are measured **interleaved** (A, B, C, A, B, C, ...) after one
warm-up round, so that changes in the machine's load affect all alike; the script prints each
loop's median samples/s and its ratio to kdlib's and writes them, with provenance, to
``results/benchmark_<dataset>_training.json``. MNIST adds, in the same rounds, kdlib's loop on
labels only and with the loss's input checks on every step (kdlib checks the first step only);
CIFAR-10 adds kdlib's loop in float32 and bfloat16 autocast, with and without ``channels_last``
(its float32, contiguous variant is the "kdlib" loop compared with the DataLoader). Files
written before the loops were interleaved lack the ``"interleaved": true`` entry.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from kdlib.augment import ImageBatchTransform
from kdlib.data import ImageDataset, load_dataset
from kdlib.data import normalize as normalize_images
from kdlib.experiments import RESULTS_DIR
from kdlib.losses import distillation_loss, softmax_cross_entropy
from kdlib.results import atomic_write_json, new_provenance
from kdlib.threads import threads_for
from kdlib.train import TrainConfig, train


class PerSampleDataset(Dataset):
    """Images held as uint8 arrays, converted to PIL and transformed one at a time (as
    ``torchvision.datasets.MNIST`` and ``CIFAR10`` do); also returns each sample's index."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable) -> None:
        self.images = images.permute(0, 2, 3, 1).squeeze(-1).numpy()  # HWC (HW for grey images)
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i], i


def setup(name: str, data: ImageDataset, n: int):
    """The student factory, the loss, kdlib's inputs and batch transform, the per-sample
    transform, the teacher logits (MNIST) and the batch size."""
    from torchvision import transforms

    from kdlib.experiments import cifar
    from kdlib.models import cifar_resnet, mlp

    normalize = [transforms.ToTensor(), transforms.Normalize(data.mean, data.std)]
    if name == "mnist":
        teacher_logits = torch.randn(n, 10)  # the loops' cost does not depend on the teacher's values

        def kd_loss(model: nn.Module, x: Tensor, y: Tensor, index: Tensor) -> Tensor:
            return distillation_loss(model(x), teacher_logits[index], y, 3.5, 0.5)

        inputs = normalize_images(data.train_images[:n], data.mean, data.std)
        return lambda: mlp([300]), kd_loss, inputs, None, transforms.Compose(normalize), teacher_logits, 32
    augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    width = cifar.SCALES["full"].width

    def label_loss(model: nn.Module, x: Tensor, y: Tensor, index: Tensor) -> Tensor:
        return softmax_cross_entropy(model(x), y)

    return (lambda: cifar_resnet((1, 1, 1, 1), stride=2, width=width), label_loss, data.train_images[:n],
            ImageBatchTransform(data.mean, data.std, augment=True), transforms.Compose(augment + normalize),
            None, 128)


def conventional_epoch(make_model: Callable[[], nn.Module], loss_fn: Callable, loader: DataLoader) -> float:
    """One epoch of the DataLoader loop; returns samples/s."""
    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    start, seen = time.perf_counter(), 0
    for x, y, index in loader:
        loss = loss_fn(model, x, y, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


VARIANTS = {  # name: (bfloat16 autocast, memory format)
    "float32, channels_last": (False, torch.channels_last),
    "float32, contiguous": (False, torch.contiguous_format),
    "bfloat16 autocast, channels_last": (True, torch.channels_last),
    "bfloat16 autocast, contiguous": (True, torch.contiguous_format),
}


def cifar_runs(make_model: Callable[[], nn.Module], inputs: Tensor, labels: Tensor, config: TrainConfig,
               batch_transform: Callable, conventional: Callable[[], float]) -> dict[str, Callable[[], float]]:
    """CIFAR-10: the per-image DataLoader loop (float32, contiguous memory) and kdlib's loop with
    and without bfloat16 autocast and channels_last memory, each a function returning samples/s."""
    def epoch(mixed: bool, memory_format: torch.memory_format) -> float:
        torch.manual_seed(0)
        model = make_model().to(memory_format=memory_format)
        def transform(x: Tensor, g: torch.Generator) -> Tensor:
            return batch_transform(x, g).contiguous(memory_format=memory_format)
        return train(model, inputs, labels, replace(config, mixed_precision=mixed),
                     batch_transform=transform).samples_per_s

    runs = {"dataloader": conventional}
    runs.update({name: (lambda v=variant: epoch(*v)) for name, variant in VARIANTS.items()})
    return runs


def bare_epoch(make_model: Callable[[], nn.Module], loss_fn: Callable, inputs: Tensor, labels: Tensor,
               batch: int) -> float:
    """The shortest in-memory loop: shuffle, index the tensors, step; no checks; samples/s."""
    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    start = time.perf_counter()
    for index in torch.randperm(len(inputs)).split(batch):
        loss = loss_fn(model, inputs[index], labels[index], index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(inputs) / (time.perf_counter() - start)


def mnist_runs(make_model: Callable[[], nn.Module], inputs: Tensor, labels: Tensor, config: TrainConfig,
               teacher_logits: Tensor, loss_fn: Callable, conventional: Callable[[], float]
               ) -> dict[str, Callable[[], float]]:
    """MNIST, all by distillation except "labels only": kdlib's loop (the loss's input checks on
    the first step only, as kdlib does), the bare indexing loop, a DataLoader over tensors, the
    per-image DataLoader, kdlib's loop on labels only, and kdlib's loop with the checks on every
    step (as kdlib did before); each a function returning samples/s."""
    import kdlib.train

    checked_once = kdlib.train.distillation_loss

    def every_step(*args, check: bool = True, **kwargs) -> Tensor:
        return checked_once(*args, check=True, **kwargs)

    def kdlib_epoch(kind: str) -> float:
        torch.manual_seed(0)
        kdlib.train.distillation_loss = every_step if kind == "KD, checks every step" else checked_once
        try:
            if kind == "labels only":
                plain = replace(config, label_weight=1.0, temperature=1.0)
                return train(make_model(), inputs, labels, plain).samples_per_s
            return train(make_model(), inputs, labels, config, teacher_logits=teacher_logits).samples_per_s
        finally:
            kdlib.train.distillation_loss = checked_once

    tensors = DataLoader(TensorDataset(inputs, labels, torch.arange(len(inputs))),
                         batch_size=config.batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    return {
        "kdlib": lambda: kdlib_epoch("kdlib"),
        "bare indexing": lambda: bare_epoch(make_model, loss_fn, inputs, labels, config.batch_size),
        "DataLoader, tensors": lambda: conventional_epoch(make_model, loss_fn, tensors),
        "dataloader": conventional,
        "labels only": lambda: kdlib_epoch("labels only"),
        "KD, checks every step": lambda: kdlib_epoch("KD, checks every step"),
    }


def interleaved(runs: dict[str, Callable[[], float]], repeats: int, baseline: str) -> dict[str, dict]:
    """Run each of ``runs`` (each returns samples/s) once to warm up, then ``repeats`` rounds of
    all of them in turn, so that changes in the machine's load affect all alike. Returns each
    one's median samples/s and its speed relative to ``baseline``: the ratio within each round
    (``ratios_by_round``) and their median (``ratio``), which drift between rounds cancels."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(run())
    out = {}
    for name, values in rates.items():
        by_round = [value / base for value, base in zip(values, rates[baseline])]
        ratio = statistics.median(by_round)
        out[name] = {"median_samples_per_s": statistics.median(values), "all_samples_per_s": values,
                     "ratios_by_round": by_round, "ratio": ratio}
        print(f"{name:>34}: {statistics.median(values):,.0f} samples/s ({ratio:.2f}x {baseline})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=("mnist", "cifar10"))
    parser.add_argument("--samples", type=int, default=None, help="images per epoch (default 10000 / 2560)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: kdlib's choice (kdlib.threads)")
    args = parser.parse_args()
    n = args.samples or (10_000 if args.dataset == "mnist" else 2_560)
    args.threads = args.threads or threads_for("mlp" if args.dataset == "mnist" else "resnet")
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    images, labels = data.train_images[:n], data.train_labels[:n]
    make_model, loss_fn, inputs, batch_transform, per_sample, teacher_logits, batch = setup(args.dataset, data, n)
    loader = DataLoader(PerSampleDataset(images, labels, per_sample), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    distil = teacher_logits is not None
    config = TrainConfig(epochs=1, batch_size=batch, lr=0.02, temperature=3.5 if distil else 1.0,
                         label_weight=0.5 if distil else 1.0)

    def conventional() -> float:
        return conventional_epoch(make_model, loss_fn, loader)

    if args.dataset == "mnist":
        runs = mnist_runs(make_model, inputs, labels, config, teacher_logits, loss_fn, conventional)
        measured = interleaved(runs, args.repeats, baseline="kdlib")
        # the cost of distillation, as before: relative to labels only, in the same rounds
        plain = measured["labels only"]["all_samples_per_s"]
        variants = {}
        for name, source in (("labels only", "labels only"), ("KD, checks on the first step", "kdlib"),
                             ("KD, checks every step", "KD, checks every step")):
            by_round = [value / b for value, b in zip(measured[source]["all_samples_per_s"], plain)]
            variants[name] = {**measured[source], "ratios_by_round": by_round,
                              "ratio": statistics.median(by_round)}
    else:
        runs = cifar_runs(make_model, inputs, labels, config, batch_transform, conventional)
        rates = interleaved(runs, args.repeats, baseline="float32, contiguous")
        measured = {"kdlib": rates["float32, contiguous"], "dataloader": rates["dataloader"]}
        base = rates["float32, channels_last"]["all_samples_per_s"]
        variants = {}
        for name in VARIANTS:
            by_round = [value / b for value, b in zip(rates[name]["all_samples_per_s"], base)]
            variants[name] = {**rates[name], "ratios_by_round": by_round,
                              "ratio": statistics.median(by_round)}
    ratio = statistics.median(k / d for k, d in zip(measured["kdlib"]["all_samples_per_s"],
                                                   measured["dataloader"]["all_samples_per_s"]))
    print(f"kdlib's loop is {ratio:.2f}x as fast as the per-image DataLoader loop (interleaved)")
    record = {"benchmark": f"{args.dataset}-training-throughput",
              "provenance": new_provenance(threads=args.threads, samples=n, repeats=args.repeats),
              "interleaved": True, "results": measured, "speedup": ratio}
    record["variants"] = variants
    out = RESULTS_DIR / f"benchmark_{args.dataset}_training.json"
    atomic_write_json(out, record)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
