"""Chapter 9's teacher: the max-norm constraint in the forward pass against a projection.

    python benchmarks/max_norm.py [--samples 20000] [--repeats 5] [--threads 1]

Hinton et al.'s teacher (784-1200-1200-10, dropout 0.2 on the input and 0.5 after each hidden
layer, max-norm 3.5, inputs shifted by up to two pixels, ``kdlib.experiments.anchors.TEACHER``)
is trained for one epoch over the same images, the same way, with its max-norm constraint
applied in one of two ways:

* **forward renorm** (kdlib before this benchmark): each hidden layer rescales its weight with
  ``torch.renorm`` inside every forward pass, and autograd differentiates through the rescaling;
* **projection** (Srivastava et al.; :class:`kdlib.models.MaxNormLinear` now): an ordinary
  linear layer whose rows are rescaled in place, without gradients, after each optimiser step.

Also in the same rounds, for scale: the same network with dropout and shifts but no max-norm.
The variants run interleaved after a warm-up round (:func:`training_throughput.interleaved`);
the script writes each one's median samples/s and its speed relative to the forward renorm,
with provenance, to ``results/benchmark_max_norm.json``. The two are not the same optimisation
(the forward renorm lets the stored weights grow and scales their gradients), so this measures
cost only; chapter 9 measures what the projection's teacher reaches.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch import Tensor, nn

from kdlib.augment import random_shift
from kdlib.data import load_mnist
from kdlib.experiments import RESULTS_DIR, anchors
from kdlib.experiments.mnist import prepare_inputs
from kdlib.models import MaxNormLinear, mlp
from kdlib.results import atomic_write_json, new_provenance
from kdlib.train import train
from training_throughput import interleaved


class ForwardRenormLinear(nn.Linear):
    """The former :class:`kdlib.models.MaxNormLinear`: the rescaling inside the forward pass."""

    def __init__(self, in_features: int, out_features: int, max_norm: float) -> None:
        super().__init__(in_features, out_features)
        self.max_norm = max_norm

    def forward(self, x: Tensor) -> Tensor:
        weight = torch.renorm(self.weight, p=2, dim=0, maxnorm=self.max_norm)
        return nn.functional.linear(x, weight, self.bias)


def teacher(kind: str) -> nn.Module:
    """Hinton's teacher with its max-norm applied as ``kind`` says, from seed 0's weights."""
    torch.manual_seed(0)
    t = anchors.TEACHER
    model = mlp(list(t["hidden"]), dropout=t["dropout"], input_dropout=t["input_dropout"],
                max_norm=t["max_norm"] if kind == "projection" else None)
    if kind == "forward renorm":
        for i, layer in enumerate(model):
            if isinstance(layer, nn.Linear) and i < len(model) - 1:
                replaced = ForwardRenormLinear(layer.in_features, layer.out_features, t["max_norm"])
                replaced.load_state_dict(layer.state_dict())
                model[i] = replaced
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist()
    x, y, _, _ = prepare_inputs(data, args.samples)  # a class-balanced subset, seed 0
    config = replace(anchors.teacher_config(anchors.SCALES["full"]), epochs=1, warmup_epochs=0)

    def shift(batch: Tensor, generator: torch.Generator) -> Tensor:
        return random_shift(batch, generator, anchors.TEACHER["shift"])

    def epoch(kind: str) -> float:
        return train(teacher(kind), x, y, config, batch_transform=shift).samples_per_s

    assert any(isinstance(m, MaxNormLinear) for m in teacher("projection"))
    kinds = ("forward renorm", "projection", "no max-norm")
    measured = interleaved({k: (lambda k=k: epoch(k)) for k in kinds}, args.repeats,
                           baseline="forward renorm")
    out = RESULTS_DIR / "benchmark_max_norm.json"
    atomic_write_json(out, {
        "benchmark": "max-norm-forward-renorm-vs-projection",
        "provenance": new_provenance(command="benchmarks/max_norm.py", threads=args.threads,
                                     samples=args.samples, repeats=args.repeats),
        "interleaved": True, "results": measured,
        "speedup": measured["projection"]["ratio"]})
    print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
