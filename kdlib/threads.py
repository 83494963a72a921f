"""How many CPU threads PyTorch uses, chosen in one place by the kind of work.

PyTorch's default (one thread per core) is fast on an idle machine and slow on a busy one: its
threads wait for each other at every operation, so when one core is taken by another program,
a two-thread run of a small network can be many times slower than a one-thread run
(``benchmarks/threads.py`` measures this). Small networks (the MNIST MLPs) gain little from a
second thread even on an idle machine, so they use one; convolutional networks use up to two.

``KDLIB_THREADS`` overrides the choice for every kind of work.
"""

from __future__ import annotations

import os

import torch

THREADS_BY_WORK: dict[str, int] = {"mlp": 1, "resnet": 2}


def threads_for(work: str) -> int:
    """The thread count for ``work`` (``"mlp"`` or ``"resnet"``): ``KDLIB_THREADS`` if set, else
    the table above, capped by the number of cores."""
    if work not in THREADS_BY_WORK:
        raise ValueError(f"work must be one of {sorted(THREADS_BY_WORK)}, got {work!r}")
    value = os.environ.get("KDLIB_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"KDLIB_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return max(1, min(THREADS_BY_WORK[work], os.cpu_count() or 1))


def set_threads(work: str) -> int:
    """Set PyTorch's thread count for ``work`` and return it (record it in the provenance)."""
    threads = threads_for(work)
    torch.set_num_threads(threads)
    return threads
