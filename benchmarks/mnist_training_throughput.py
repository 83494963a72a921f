"""Training throughput of kdlib's loop against the conventional DataLoader loop, on MNIST.

Both loops train the same 784-300-10 student by distillation (alpha = 0.5, T = 3.5, batch 32)
for one epoch over the same images, with the same thread count:

* kdlib: the dataset is one normalised tensor in memory; batches are drawn by indexing it;
* conventional (as in the PyTorch tutorials): ``torchvision.datasets.MNIST`` with a per-sample
  ``ToTensor() + Normalize()`` transform and a ``DataLoader``; the teacher's logits are looked up
  by the sample index the dataset returns.

Each loop is run once to warm up, then ``--repeats`` times; the script prints the median
samples/s of each and their ratio, and writes them with provenance to
``results/benchmark_mnist_training.json``.

    python benchmarks/mnist_training_throughput.py [--samples 10000] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kdlib.data import data_root, load_mnist, normalize
from kdlib.experiments import RESULTS_DIR
from kdlib.losses import distillation_loss
from kdlib.models import mlp
from kdlib.results import atomic_write_json, new_provenance
from kdlib.train import TrainConfig, train


class IndexedMNIST(Dataset):
    """torchvision's MNIST with per-sample transforms, also returning each sample's index."""

    def __init__(self) -> None:
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        self.inner = datasets.MNIST(root=str(data_root()), train=True, download=False, transform=transform)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        image, label = self.inner[i]
        return image, label, i


def conventional_epoch(loader: DataLoader, teacher_logits: torch.Tensor) -> float:
    torch.manual_seed(0)
    student = mlp([300])
    optimizer = torch.optim.SGD(student.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    start = time.perf_counter()
    seen = 0
    for images, labels, index in loader:
        loss = distillation_loss(student(images), teacher_logits[index], labels, 3.5, 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def kdlib_epoch(x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    torch.manual_seed(0)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.02, temperature=3.5, alpha=0.5)
    return train(mlp([300]), x, y, config, teacher_logits=teacher_logits).samples_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_mnist()
    x = normalize(mnist.train_images[:args.samples], mnist.mean, mnist.std)
    y = mnist.train_labels[:args.samples]
    teacher_logits = torch.randn(len(mnist.train_labels), 10)  # the loops' cost does not depend on the teacher
    loader = DataLoader(Subset(IndexedMNIST(), range(args.samples)), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    measured = {}
    for name, run in (("kdlib", lambda: kdlib_epoch(x, y, teacher_logits[:args.samples])),
                      ("dataloader", lambda: conventional_epoch(loader, teacher_logits))):
        run()  # warm-up
        rates = [run() for _ in range(args.repeats)]
        measured[name] = {"median_samples_per_s": statistics.median(rates), "all_samples_per_s": rates}
        print(f"{name:>10}: {statistics.median(rates):,.0f} samples/s (median of {args.repeats})")
    ratio = measured["kdlib"]["median_samples_per_s"] / measured["dataloader"]["median_samples_per_s"]
    print(f"kdlib's loop is {ratio:.1f}x faster")
    out = RESULTS_DIR / "benchmark_mnist_training.json"
    atomic_write_json(out, {"benchmark": "mnist-training-throughput",
                            "provenance": new_provenance(threads=args.threads, samples=args.samples,
                                                         repeats=args.repeats),
                            "results": measured, "speedup": ratio})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
