"""When to train in bfloat16: chosen by the hardware, with a switch to turn it off.

Autocast runs matrix products and convolutions in bfloat16 (8 bits of mantissa instead of 23)
while keeping the weights, the loss and the optimiser in float32. On a CUDA GPU this is the
standard fast path; on a CPU it pays only where the processor has bfloat16 instructions
(AVX-512 BF16 or AMX): ``benchmarks/training_throughput.py cifar10`` measures it, and chapter 6
prints that measurement. Small MLPs are left in float32: their time goes to overheads, not to
arithmetic.

``KDLIB_BF16=0`` turns bfloat16 off everywhere (``KDLIB_BF16=1`` asks for it on any device).
"""

from __future__ import annotations

import os

import torch


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX-512 BF16 or AMX)."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check is not None and check())


def use_bfloat16(device: torch.device) -> bool:
    """bfloat16 autocast for convolutional networks on ``device``: on CUDA, and on CPUs with
    native bfloat16 support, unless ``KDLIB_BF16`` says otherwise."""
    setting = os.environ.get("KDLIB_BF16", "").strip().lower()
    if setting not in ("", "0", "1"):
        raise ValueError(f"KDLIB_BF16 must be 0 or 1 (or unset for the automatic choice), got {setting!r}")
    if setting:
        return setting == "1"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bfloat16())
