"""Experiments across processes, GPUs and machines, with ``torch.distributed``.

Under ``torchrun`` every process (a *rank*) runs the same command::

    torchrun --standalone --nproc-per-node 4 -m kdlib.experiments regimes --profile full
    srun torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint $HEAD:29500 -m kdlib.experiments regimes --profile full   # SLURM

What each rank does (:func:`run_rows`):

* rank 0 alone reads and writes the result file; it tells the others which planned rows are not
  done yet (a broadcast), so resuming works as in one process and no shared filesystem is needed;
* the rows are dealt out round-robin: rank ``r`` trains rows ``r``, ``r + W``, ``r + 2W``... of
  the list (``W`` ranks in all), each on its own device (``cuda:<local rank>`` where there are
  GPUs, else the CPU);
* after each round, the finished rows are gathered to rank 0 with the collective API
  (``gather_object``), which saves them (atomically, as always); rank 0 also decides for all
  whether the time budget allows another round;
* a model that several rows need (a teacher) is trained once, by rank 0, and its weights are
  broadcast to the others (:func:`one_for_all`).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) there is one rank and none of this
costs anything. If a rank dies, ``torchrun`` stops the others; the result file then holds the
rows of the rounds that finished, whole, and a rerun resumes from them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

TIMEOUT_S = 1800.0
"""How long a rank waits for the others at a collective step before it gives up (seconds);
``KDLIB_DIST_TIMEOUT_S`` overrides it. A round lasts as long as its slowest row."""


@dataclass(frozen=True)
class Rank:
    """This process's place among the ranks of a run."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that reads and writes the result file."""
        return self.rank == 0


def rank() -> Rank:
    """This process's :class:`Rank`. Under ``torchrun`` (``WORLD_SIZE`` > 1) the first call joins
    the process group: ``gloo`` on CPUs, ``nccl`` where every rank has a GPU."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Rank(0, 1, torch.device("cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and os.environ.get("KDLIB_DEVICE", "").strip().lower() != "cpu"
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        timeout = float(os.environ.get("KDLIB_DIST_TIMEOUT_S", TIMEOUT_S))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout))
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def broadcast(value: Any, where: Rank, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (a picklable object; rank 0's by default)."""
    if where.world == 1:
        return value
    import torch.distributed as dist

    box = [value if where.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(value: Any, where: Rank) -> list[Any] | None:
    """Every rank's ``value``, in rank order, on rank 0 (``None`` on the others)."""
    if where.world == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] | None = [None] * where.world if where.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def one_for_all(make: Callable[[], nn.Module], build: Callable[[], nn.Module], where: Rank) -> nn.Module:
    """A model trained (or loaded) once: rank 0 calls ``make()``, the others ``build()`` an
    untrained twin and receive rank 0's weights."""
    model = make() if where.is_main else build()
    if where.world > 1:
        state = broadcast({k: v.cpu() for k, v in model.state_dict().items()} if where.is_main else None, where)
        model.load_state_dict(state)
    return model


class Planned(Protocol):
    """A planned row: a frozen recipe that names itself in the result file."""

    def row_id(self) -> str: ...


Run = TypeVar("Run", bound=Planned)


def run_rows(todo: Sequence[Run], train_one: Callable[[Run], dict[str, Any]],
             save: Callable[[str, dict[str, Any]], None], stop: Callable[[], bool],
             where: Rank | None = None, report: Callable[[int, int, str, dict[str, Any]], None] | None = None,
             ) -> int:
    """Train the rows ``todo`` (rank 0's list counts), dealt out round-robin over the ranks;
    rank 0 calls ``save(row_id, row)`` for each finished row and ``report(i, n, row_id, row)``
    if given. ``stop()`` (asked on rank 0 before each round) ends the run early. Returns the
    number of rows saved (on rank 0; 0 elsewhere)."""
    where = where or rank()
    todo = list(broadcast(list(todo), where))
    saved = 0
    for start in range(0, len(todo), where.world):
        if broadcast(stop() if where.is_main else None, where):
            break
        mine = start + where.rank
        result = (todo[mine].row_id(), train_one(todo[mine])) if mine < len(todo) else None
        finished = gather(result, where)
        for item in finished or []:
            if item is not None:
                saved += 1
                save(*item)
                if report is not None:
                    report(saved, len(todo), *item)
    return saved
