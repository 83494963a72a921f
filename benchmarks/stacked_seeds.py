"""Table 1's students trained one seed at a time against several seeds stacked in one model.

    python benchmarks/stacked_seeds.py [--seeds 3] [--rounds 5] [--steps 300] [--threads 1]

Issue 31 asked whether Table 1 could train its seeds batched: ``S`` students of the same shape
(784-300-10, batch 32, SGD with momentum, the KD loss on precomputed teacher logits) kept as
one set of stacked weights ``(S, ...)`` and stepped together with batched matrix products
(``torch.bmm``), each seed reading its own shuffled batch. This script times ``--steps``
training steps of each variant on MNIST-shaped random data, in alternating order over
``--rounds`` rounds after one warm-up round, at a fixed thread count: ``S`` sequential
single-model steps against one stacked step, as images per second and their ratio. It also
checks that the stacked step is the same computation: one step of a stacked model equals
the ``S`` single-model steps it replaces, to float32 rounding.

Written with provenance to ``results/benchmark_stacked_seeds.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.experiments import RESULTS_DIR
from kdlib.results import atomic_write_json, new_provenance

HIDDEN, BATCH, LR, MOMENTUM, TEMPERATURE, WEIGHT = 300, 32, 0.02, 0.9, 3.5, 0.5


def kd_loss(logits: Tensor, teacher: Tensor, labels: Tensor) -> Tensor:
    """Hinton's loss at the report's weighting, summed over the leading (seed) dimensions' means."""
    soft = F.kl_div(F.log_softmax(logits / TEMPERATURE, -1), F.log_softmax(teacher / TEMPERATURE, -1),
                    reduction="none", log_target=True).sum(-1).mean(-1) * TEMPERATURE ** 2
    hard = F.cross_entropy(logits.transpose(-1, -2) if logits.dim() == 3 else logits, labels, reduction="none")
    return ((1 - WEIGHT) * soft + WEIGHT * hard.mean(-1)).sum()


def init(seeds: int) -> list[Tensor]:
    """Stacked parameters ``(S, ...)`` of ``S`` students, each initialised as ``nn.Linear`` is."""
    params = []
    for s in range(seeds):
        torch.manual_seed(s)
        first, second = torch.nn.Linear(784, HIDDEN), torch.nn.Linear(HIDDEN, 10)
        params.append([first.weight.T, first.bias, second.weight.T, second.bias])
    return [torch.stack([p[i] for p in params]).detach().contiguous().requires_grad_() for i in range(4)]


def forward(params: list[Tensor], x: Tensor) -> Tensor:
    """Logits ``(S, B, 10)`` of stacked students on their own batches ``x`` ``(S, B, 784)``."""
    w1, b1, w2, b2 = params
    return torch.baddbmm(b2[:, None], torch.relu(torch.baddbmm(b1[:, None], x, w1)), w2)


def single(params: list[Tensor], seed: int) -> torch.nn.Sequential:
    """Seed ``seed`` of stacked parameters as the ordinary model Table 1 trains (``nn.Linear``)."""
    model = torch.nn.Sequential(torch.nn.Linear(784, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    with torch.no_grad():
        for layer, (w, b) in zip((model[0], model[2]), (params[:2], params[2:])):
            layer.weight.copy_(w[seed].T)
            layer.bias.copy_(b[seed])
    return model


def make_step(params: list[Tensor], model: torch.nn.Module | None = None):
    """One SGD step of the stacked ``params`` (or, with ``model``, of that ordinary model)."""
    optimizer = torch.optim.SGD(params if model is None else model.parameters(), lr=LR, momentum=MOMENTUM,
                                foreach=True)

    def step(x: Tensor, teacher: Tensor, labels: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = forward(params, x) if model is None else model(x)
        kd_loss(logits, teacher, labels).backward()
        optimizer.step()

    return step


def check_equal(seeds: int) -> float:
    """Largest difference between a stacked model after 5 steps and its seeds trained alone."""
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(seeds, BATCH, 784, generator=gen), torch.randn(seeds, BATCH, 10, generator=gen),
             torch.randint(0, 10, (seeds, BATCH), generator=gen)) for _ in range(5)]
    stacked = init(seeds)
    models = [single(stacked, s) for s in range(seeds)]
    step, alone = make_step(stacked), [make_step([], m) for m in models]
    for x, t, y in data:
        step(x, t, y)
        for s in range(seeds):
            alone[s](x[s], t[s], y[s])
    gaps = [(stacked[0][s] - models[s][0].weight.T).abs().max().item() for s in range(seeds)]
    gaps += [(stacked[2][s] - models[s][2].weight.T).abs().max().item() for s in range(seeds)]
    return max(gaps)


def timed(step, x: Tensor, t: Tensor, y: Tensor, steps: int) -> float:
    start = time.perf_counter()
    for i in range(steps):
        step(x[i % len(x)], t[i % len(x)], y[i % len(x)])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_stacked_seeds.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = args.seeds
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, s, BATCH, 784, generator=gen)
    t = torch.randn(50, s, BATCH, 10, generator=gen)
    y = torch.randint(0, 10, (50, s, BATCH), generator=gen)
    params = init(s)
    singles = [make_step([], single(params, i)) for i in range(s)]
    stacked = make_step(params)

    def sequential() -> float:
        return sum(timed(singles[i], x[:, i], t[:, i], y[:, i], args.steps) for i in range(s))

    def batched() -> float:
        return timed(stacked, x, t, y, args.steps)

    times: dict[str, list[float]] = {"sequential": [], "stacked": []}
    for round_ in range(args.rounds + 1):
        pair = [("sequential", sequential), ("stacked", batched)]
        for name, fn in (pair if round_ % 2 == 0 else pair[::-1]):
            seconds = fn()
            if round_:
                times[name].append(seconds)
    images = s * args.steps * BATCH
    rates = {name: images / statistics.median(v) for name, v in times.items()}
    result = {
        "benchmark": "stacked_seeds",
        "provenance": new_provenance(seeds=s, rounds=args.rounds, steps=args.steps, threads=args.threads,
                                     student=f"784-{HIDDEN}-10, batch {BATCH}, SGD lr {LR} momentum {MOMENTUM}, "
                                             f"KD loss T={TEMPERATURE} weight {WEIGHT}"),
        "images_per_s": rates, "all_round_s": times,
        "ratio": rates["stacked"] / rates["sequential"],
        "max_abs_difference_after_5_steps": check_equal(s),
    }
    atomic_write_json(args.out, result)
    print({k: v for k, v in result.items() if k != "provenance"})


if __name__ == "__main__":
    main()
