"""A toy experiment for tests/test_distributed.py: six small MLPs trained on random data, run
by :func:`kdlib.distributed.run_rows` in one process or under torchrun.

    python tests/distributed_rows.py OUT [--die-at ROW]
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_rows.py OUT

``--die-at ROW``: the rank that gets that row exits abruptly before training it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from kdlib.distributed import one_for_all, rank, run_rows
from kdlib.models import mlp, seeded
from kdlib.results import ResultFile, new_provenance
from kdlib.train import TrainConfig, accuracy, predict_logits, train


@dataclass(frozen=True)
class Toy:
    seed: int
    kd: bool

    def row_id(self) -> str:
        return f"{'kd' if self.kd else 'nokd'}/seed{self.seed}"


def main() -> None:
    torch.set_num_threads(1)
    out, die_at = sys.argv[1], int(sys.argv[3]) if "--die-at" in sys.argv else -1
    where = rank()
    g = torch.Generator().manual_seed(123)
    x, y = torch.randn(600, 1, 28, 28, generator=g), torch.randint(0, 10, (600,), generator=g)
    results = ResultFile(out if where.is_main else None, "toy", new_provenance("toy", world=where.world))

    def make_teacher() -> torch.nn.Module:
        teacher = seeded(lambda: mlp([32]), 99)
        train(teacher, x, y, TrainConfig(epochs=2, batch_size=50, lr=0.05))
        return teacher

    teacher = one_for_all(make_teacher, lambda: mlp([32]), where)
    soft = predict_logits(teacher, x)
    plan = [Toy(seed, kd) for seed in range(3) for kd in (False, True)]
    todo = [p for p in plan if not results.has(p.row_id())]

    def train_one(run: Toy) -> dict:
        if plan.index(run) == die_at:
            os._exit(3)
        student = seeded(lambda: mlp([16]), run.seed)
        config = TrainConfig(epochs=2, batch_size=50, lr=0.05, seed=run.seed,
                             **({"temperature": 4.0, "label_weight": 0.5} if run.kd else {}))
        train(student, x, y, config, teacher_logits=soft if run.kd else None)
        return {"accuracy": accuracy(student, x, y), "rank": where.rank}

    run_rows(todo, train_one, results.put, stop=lambda: False, where=where)
    results.save()


if __name__ == "__main__":
    main()
