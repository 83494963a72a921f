"""Measuring inference cost honestly: timings (warm-up, repeats, median) and FLOP counts.

Wall-clock timings of a single call are noisy, so :func:`time_call` warms up first, repeats the
call many times and reports the median and the inter-quartile range. The thread count is fixed
while timing (and restored afterwards) because PyTorch's default, one thread per core, makes
small-model timings depend on whatever else the machine is doing.

FLOPs are counted from the layers' shapes (:func:`count_flops`): ``2 * in * out`` for a linear
layer, ``2 * (C_in / groups) * k_h * k_w * C_out * H_out * W_out`` for a convolution, per
example; a multiply-add counts as two FLOPs. Element-wise operations (ReLU, batch norm,
additions) are left out: they are cheap in FLOPs but not in time, one reason measured speed-ups
differ from FLOP ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median and quartiles over ``repeats`` timed calls."""

    median_s: float
    q1_s: float
    q3_s: float
    repeats: int
    threads: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@contextmanager
def fixed_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)`` (``None``: leave it), then restore."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def time_call(fn: Callable[[], object], repeats: int = 50, warmup: int = 5, threads: int | None = 1,
              min_time_s: float = 0.0) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones (more if needed to
    fill ``min_time_s``); returns the median and quartiles."""
    if repeats < 3:
        raise ValueError(f"repeats must be >= 3 for a median and quartiles, got {repeats}")
    with fixed_threads(threads) as used:
        for _ in range(warmup):
            fn()
        samples: list[float] = []
        started = time.perf_counter()
        while len(samples) < repeats or time.perf_counter() - started < min_time_s:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Timing(median_s=median, q1_s=q1, q3_s=q3, repeats=len(samples), threads=used)


def time_inference(model: nn.Module, batch: Tensor, repeats: int = 50, warmup: int = 5,
                   threads: int | None = 1) -> Timing:
    """Seconds for one forward pass of ``model`` on ``batch``, in eval mode under ``inference_mode``."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return time_call(lambda: model(batch), repeats=repeats, warmup=warmup, threads=threads)
    finally:
        model.train(was_training)


def count_flops(model: nn.Module, example: Tensor) -> int:
    """FLOPs of one forward pass per example (linear and convolution layers; see module doc)."""
    total = 0

    def linear_hook(module: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        total += 2 * module.in_features * module.out_features

    def conv_hook(module: nn.Conv2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * (module.in_channels // module.groups) * kh * kw * output[0].numel()

    handles = []
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear_hook))
        elif isinstance(layer, nn.Conv2d):
            handles.append(layer.register_forward_hook(conv_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(example[:1])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


@dataclass(frozen=True)
class InferenceCost:
    """A model's inference cost: latency at batch 1, throughput at a large batch, FLOPs, parameters."""

    latency_s: Timing
    throughput_per_s: float
    large_batch: int
    flops: int
    parameters: int

    def to_dict(self) -> dict[str, object]:
        return {"latency_s": self.latency_s.to_dict(), "throughput_per_s": self.throughput_per_s,
                "large_batch": self.large_batch, "flops": self.flops, "parameters": self.parameters}


def inference_cost(model: nn.Module, inputs: Tensor, large_batch: int = 1000, repeats: int = 50,
                   threads: int | None = 1) -> InferenceCost:
    """Measure :class:`InferenceCost` on rows of ``inputs`` (already in the model's input format)."""
    latency, throughput = latency_and_throughput(model, inputs, large_batch, repeats, threads)
    params = sum(p.numel() for p in model.parameters())
    return InferenceCost(latency_s=latency, throughput_per_s=throughput, large_batch=len(inputs[:large_batch]),
                         flops=count_flops(model, inputs), parameters=params)


def latency_and_throughput(model: nn.Module, inputs: Tensor, large_batch: int, repeats: int,
                           threads: int | None = 1) -> tuple[Timing, float]:
    """The timing of one row (latency at batch 1) and the rows per second at ``large_batch`` rows,
    both medians of repeated runs (fewer repeats for the large batch, which takes longer)."""
    latency = time_inference(model, inputs[:1], repeats=repeats, threads=threads)
    big = inputs[:large_batch]
    per_batch = time_inference(model, big, repeats=max(5, repeats // 5), warmup=2, threads=threads)
    return latency, len(big) / per_batch.median_s


def cost_ratios(teacher: dict, student: dict) -> dict[str, float]:
    """Teacher/student ratios of latency, throughput (student/teacher) and FLOPs, from ``to_dict()`` forms."""
    return {
        "latency_ratio": teacher["latency_s"]["median_s"] / student["latency_s"]["median_s"],
        "throughput_ratio": student["throughput_per_s"] / teacher["throughput_per_s"],
        "flop_ratio": teacher["flops"] / student["flops"],
    }
