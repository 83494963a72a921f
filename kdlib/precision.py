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


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) under which bfloat16 is still native
BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_1_512", "ALL")


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX-512 BF16 or AMX) *and* PyTorch's
    kernels may use them. Capping the kernels below AVX-512 (``ATEN_CPU_CAPABILITY=avx2``,
    ``ONEDNN_MAX_CPU_ISA=AVX2``: how CI imitates a CPU without AVX-512, such as Colab's) leaves
    bfloat16 to a slow emulation, so kdlib then trains in float32, as it would on that CPU."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is None or not check():
        return False
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)  # torch >= 2.1
    in_use = capability() if capability is not None else os.environ.get("ATEN_CPU_CAPABILITY", "AVX512")
    if not in_use.upper().startswith("AVX512"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return not isa or isa.startswith(BF16_ISAS)


def use_bfloat16(device: torch.device) -> bool:
    """bfloat16 autocast for convolutional networks on ``device``: on CUDA, and on CPUs with
    native bfloat16 support, unless ``KDLIB_BF16`` says otherwise."""
    setting = os.environ.get("KDLIB_BF16", "").strip().lower()
    if setting not in ("", "0", "1"):
        raise ValueError(f"KDLIB_BF16 must be 0 or 1 (or unset for the automatic choice), got {setting!r}")
    if setting:
        return setting == "1"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bfloat16())
