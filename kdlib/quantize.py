"""Quantized students: quantization-aware training (QAT) and real 8-bit integer models.

A ``b``-bit quantizer maps a real number ``x`` to one of ``2**b`` levels,

    q = clamp(round(x / scale) + zero_point, q_min, q_max),      x_hat = (q - zero_point) * scale,

so values are rounded to a grid of step ``scale`` and clipped to its range. *Fake quantization*
computes ``x_hat`` in floating point during training, so that the network learns weights that
survive the rounding. Rounding has zero gradient almost everywhere; the *straight-through
estimator* (STE) passes the gradient through unchanged inside the range and sets it to 0 outside
(where the clamp is active) (Bengio et al. 2013; used by Polino et al. 2018 for quantized
distillation).

:func:`fake_quantize` is the textbook formula, written out for reading and testing. Training
uses PyTorch's own tooling (``torch.ao.quantization``, FX graph mode): :func:`prepare_qat`
inserts fake quantizers for the weights (per output channel, symmetric) and the activations (per
tensor, affine) at ``bits`` bits, except the classifier, which stays at 8 bits;
:func:`to_int8` converts an 8-bit QAT model into a real integer model that runs on the x86
backend's int8 kernels (VNNI where the CPU has it).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)
"""Bit widths for QAT. Only 8-bit models can become integer models (:func:`to_int8`)."""


def check_bits(bits: int) -> int:
    """``bits`` must be one of :data:`SUPPORTED_BITS`."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be an integer from {SUPPORTED_BITS[0]} to {SUPPORTED_BITS[-1]}, got {bits!r} "
                         "(1 bit would be binarisation, which needs other methods; above 8 bits use float)")
    return bits


def level_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integer levels of a ``bits``-bit quantizer: ``[-2**(b-1), 2**(b-1) - 1]`` if signed,
    ``[0, 2**b - 1]`` if not."""
    check_bits(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


class _FakeQuantizeSTE(torch.autograd.Function):
    """Forward: the quantize-dequantize formula. Backward: the straight-through estimator, the
    incoming gradient where the rounded value lies inside ``[q_min, q_max]``, 0 where it was
    clipped."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float, zero_point: int, q_min: int, q_max: int) -> Tensor:  # noqa: ANN001
        q = torch.round(x / scale) + zero_point
        inside = (q >= q_min) & (q <= q_max)
        ctx.save_for_backward(inside)
        return (torch.clamp(q, q_min, q_max) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:  # noqa: ANN001
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def fake_quantize(x: Tensor, bits: int, scale: float, zero_point: int = 0, signed: bool = True) -> Tensor:
    """``(clamp(round(x / scale) + zero_point, q_min, q_max) - zero_point) * scale``, with the
    straight-through estimator: the gradient is 1 where ``round(x / scale) + zero_point`` lies
    inside ``[q_min, q_max]`` and 0 where the clamp cuts it off. The same values and gradients as
    ``torch.fake_quantize_per_tensor_affine``."""
    q_min, q_max = level_range(bits, signed)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return _FakeQuantizeSTE.apply(x, float(scale), int(zero_point), q_min, q_max)


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao's FX quantization warns that it is being migrated to the torchao package; the
    API works, and the warning would only clutter the book."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(migrat|deprecat|torchao|TypedStorage).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def qconfig_mapping(bits: int, output_layer: str | None = None):
    """Fake quantizers for ``bits`` bits. 8 bits: PyTorch's default x86 QAT configuration (the
    one whose models convert to int8 kernels; it keeps activations to 7 bits, ``reduce_range``,
    to avoid overflow in the int8 kernels). Fewer bits: weights symmetric per output channel on
    ``[-2**(b-1), 2**(b-1) - 1]``, activations affine per tensor on ``[0, 2**b - 1]``; the
    module named ``output_layer`` (the classifier) keeps the 8-bit configuration, since ``b``-bit
    logits would put ten class scores on ``2**b`` values (a common choice: Mishra and Marr 2018
    keep the last layer at higher precision too)."""
    from torch.ao.quantization import (FakeQuantize, MovingAverageMinMaxObserver,
                                       MovingAveragePerChannelMinMaxObserver, QConfig, QConfigMapping,
                                       get_default_qat_qconfig_mapping)

    check_bits(bits)
    if bits == 8:
        return get_default_qat_qconfig_mapping("x86")
    w_min, w_max = level_range(bits, signed=True)
    a_min, a_max = level_range(bits, signed=False)
    activation = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=a_min, quant_max=a_max,
                                        dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=w_min,
                                    quant_max=w_max, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    mapping = QConfigMapping().set_global(QConfig(activation=activation, weight=weight))
    if output_layer is not None:
        mapping.set_module_name(output_layer, get_default_qat_qconfig_mapping("x86").global_qconfig)
    return mapping


def _torch_layers(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every convolution and batch norm of a class defined
    outside PyTorch (a subclass, such as :mod:`kdlib.fastnet`'s, which only changes how it is
    initialised) replaced by PyTorch's own class, with the same weights, buffers, mode and
    frozen parameters. torch.fx traces through a subclass instead of keeping it as one layer,
    and then cannot fuse or quantize it."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d:
                padding = child.padding
                if padding == "same":  # 'same' as numbers, for the quantized kernels
                    padding = tuple(d * (k - 1) // 2 for d, k in zip(child.dilation, child.kernel_size))
                plain: nn.Module = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size,
                                             child.stride, padding, child.dilation, child.groups,
                                             child.bias is not None, child.padding_mode)
            elif isinstance(child, nn.BatchNorm2d) and type(child) is not nn.BatchNorm2d:
                plain = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            else:
                continue
            plain.load_state_dict(child.state_dict())
            for mine, theirs in zip(plain.parameters(), child.parameters()):
                mine.requires_grad_(theirs.requires_grad)
            setattr(parent, name, plain.train(child.training))
    return model


def prepare_qat(model: nn.Module, bits: int, example: Tensor) -> nn.Module:
    """A copy of ``model`` with fake quantizers at ``bits`` bits, ready for training with
    :func:`kdlib.train.train` (batch norm folded into the convolutions, as the int8 model will
    have it); its last linear layer (the classifier) stays at 8 bits (:func:`qconfig_mapping`).
    ``example``: one input batch, used to trace the model."""
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    check_bits(bits)
    model = _torch_layers(copy.deepcopy(model)).cpu().to(memory_format=torch.contiguous_format).train()
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    try:
        with _quiet():
            mapping = qconfig_mapping(bits, output_layer=linear[-1] if linear else None)
            prepared = prepare_qat_fx(model, mapping, example_inputs=(example.cpu(),))
    except Exception as exc:  # tracing failures come in many types
        raise ValueError(f"cannot quantize {type(model).__name__}: torch.fx could not trace it ({exc}); "
                         "kdlib quantizes the course's mlp, cifar_resnet and fast_cifar_net networks") from exc
    prepared.kdlib_bits = bits
    return prepared


def freeze(model: nn.Module) -> nn.Module:
    """End of QAT: stop updating the quantizers' ranges and the batch-norm statistics, so that
    evaluation uses the learned grid (and matches the integer model)."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats
    from torch.ao.quantization import disable_observer

    model.apply(disable_observer)
    model.apply(freeze_bn_stats)
    return model.eval()


def to_int8(model: nn.Module) -> nn.Module:
    """The integer model of an 8-bit QAT model (:func:`prepare_qat` with ``bits=8``): int8
    weights, uint8 activations, int8 kernels of the x86 backend. Runs on the CPU."""
    from torch.ao.quantization.quantize_fx import convert_fx

    bits = getattr(model, "kdlib_bits", None)
    if bits != 8:
        raise ValueError(f"only 8-bit QAT models can become integer models (this one has bits={bits}); "
                         "PyTorch's CPU backends have int8 kernels only, so narrower models stay simulated")
    uncalibrated = [name for name, module in model.named_modules()
                    if isinstance(getattr(module, "min_val", None), Tensor)
                    and not torch.isfinite(module.min_val).all()]
    if uncalibrated:
        raise ValueError(f"the QAT model has not seen any data yet (its quantizers have no ranges, e.g. "
                         f"{uncalibrated[0]!r}): train it, or at least run a few batches through it in train "
                         "mode, before converting it to int8")
    torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    with _quiet():
        return convert_fx(freeze(copy.deepcopy(model)))


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's saved weights (``torch.save`` of its ``state_dict``)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())
