"""How many CPU threads PyTorch uses, chosen in one place by the kind of work.

PyTorch's default (one thread per core) is fast on an idle machine and slow on a busy one: its
threads wait for each other at every operation, so when one core is taken by another program,
a two-thread run of a small network can be many times slower than a one-thread run
(``benchmarks/threads.py`` measures this). Small networks (the MNIST MLPs) gain little from a
second thread even on an idle machine, so they use one; the larger MLP teachers of Table 1
and chapter 9 (784-1200-1200-10, 1.7 times as fast on two threads), MLPs trained many at a
time as one stack (:mod:`kdlib.stacked`) and convolutional networks use up to two. Processes of one run on
one machine (``--workers``, or torchrun's ``LOCAL_WORLD_SIZE``) share its cores: each gets its
part of them.

``KDLIB_THREADS`` overrides the choice for every kind of work. More threads than the cores this
process may use are refused: they only wait for each other (one MNIST epoch took 31 s with
1,000 threads on 2 cores, against 1.1 s with one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from kdlib.errors import UsageError

THREADS_BY_WORK: dict[str, int] = {"mlp": 1, "large mlp": 2, "stacked mlp": 2, "resnet": 2}


def available_cores() -> int:
    """The number of cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for(work: str, whole_machine: bool = False) -> int:
    """The thread count for ``work`` (a key of :data:`THREADS_BY_WORK`):
    ``KDLIB_THREADS`` if set (at most :func:`available_cores`), else the table above, capped by
    this process's part of the cores (:func:`cores_per_process`), or by all of them with
    ``whole_machine=True`` (for work one process does while the others of its run wait)."""
    if work not in THREADS_BY_WORK:
        raise ValueError(f"work must be one of {sorted(THREADS_BY_WORK)}, got {work!r}")
    cores = available_cores()
    value = os.environ.get("KDLIB_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"KDLIB_THREADS must be a positive integer, got {value!r}")
        if int(value) > cores:
            raise UsageError(f"KDLIB_THREADS={value} is more threads than the {cores} core(s) this process can use: "
                             f"the extra threads only wait for each other and slow training down many times. "
                             f"Set KDLIB_THREADS to at most {cores}, or unset it to let kdlib choose")
        return int(value)
    share = available_cores() if whole_machine else cores_per_process()
    return max(1, min(THREADS_BY_WORK[work], share))


def cores_per_process() -> int:
    """This process's part of the cores: :func:`available_cores` shared equally among the
    processes of one run on this machine (``LOCAL_WORLD_SIZE``, set by ``--workers`` and
    torchrun), at least one."""
    local = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
    return max(1, available_cores() // max(1, int(local) if local.isdigit() else 1))


def set_threads(work: str) -> int:
    """Set PyTorch's thread count for ``work`` and return it (record it in the provenance)."""
    threads = threads_for(work)
    torch.set_num_threads(threads)
    return threads


@contextmanager
def at_most(threads: int) -> Iterator[int]:
    """Run a block on at most ``threads`` threads (fewer where fewer are set), then restore the
    count: for work whose bits must not depend on the thread count, such as a matrix product
    that two threads would split. Yields the count the block runs on."""
    before = torch.get_num_threads()
    count = max(1, min(threads, before))
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)


@contextmanager
def exactly(threads: int) -> Iterator[int]:
    """Run a block on ``threads`` threads (more than :func:`available_cores` is refused), then
    restore the count: for work whose bits must be the same in every process that does it,
    whatever the thread count around it. Yields ``threads``."""
    if threads < 1 or threads > available_cores():
        raise UsageError(f"{threads} thread(s) asked for, but this process can use "
                         f"{available_cores()} core(s): ask for 1 to {available_cores()}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
