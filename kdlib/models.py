"""The networks of the course.

* :func:`mlp`: fully connected networks for MNIST: the report's teacher 784-1200-1200-10 and its
  one-hidden-layer students 784-H-10 (H = 50, 300, 600).
* :func:`cifar_resnet`: ResNets for CIFAR-10 with a configurable number of blocks per stage
  (zero included), first-stage stride and width.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def mlp(hidden: list[int] | tuple[int, ...], in_features: int = 784, num_classes: int = 10,
        dropout: float = 0.0, input_dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_features -> hidden[0] -> ... -> num_classes``.

    The input is flattened first, so the network takes images ``(N, 1, 28, 28)`` directly.
    ``dropout`` (a probability) is applied after every hidden layer when it is above 0, and
    ``input_dropout`` to the input pixels (Hinton et al.'s teacher used 0.2 there, 0.5 after
    the hidden layers).
    """
    if isinstance(hidden, int) or not isinstance(hidden, (list, tuple)):
        raise ValueError(f"hidden must be a list of layer widths, e.g. [300], got {hidden!r}")
    if not hidden or any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in hidden):
        raise ValueError(f"hidden must list at least one positive integer layer width, got {hidden!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {p!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    if input_dropout > 0:
        layers.append(nn.Dropout(input_dropout))
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with PyTorch's random generator seeded first: the same seed gives the same
    initial weights, so the two students of a paired comparison start from the same point."""
    torch.manual_seed(seed)
    return build()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out = channels * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out),
        )
        self.shortcut = shortcut(in_channels, out, stride)

    def forward(self, x):
        return (self.body(x) + self.shortcut(x)).relu_()


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out = channels * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, out, 1, bias=False), nn.BatchNorm2d(out),
        )
        self.shortcut = shortcut(in_channels, out, stride)

    def forward(self, x):
        return (self.body(x) + self.shortcut(x)).relu_()


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 convolution with batch norm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


def cifar_resnet(blocks: list[int] | tuple[int, ...], block: str = "bottleneck", stride: int = 1,
                 width: float = 1.0, num_classes: int = 10) -> nn.Sequential:
    """A ResNet for 32x32 images (3x3 stem, no max-pool), as in He et al. (2016) for CIFAR.

    ``blocks`` gives the number of residual blocks in each of the four stages (64, 128, 256,
    512 channels before expansion, times ``width``); a stage with 0 blocks is left out, so
    ``[2, 2, 0, 0]`` is a two-stage network. ``stride`` is the stride of the first stage (the
    report's "stride of the base block"); later stages halve the resolution. ``block`` is
    ``"bottleneck"`` (ResNet-50: ``blocks=[3, 4, 6, 3]``) or ``"basic"`` (ResNet-18:
    ``[2, 2, 2, 2]``).
    """
    kinds = {"bottleneck": Bottleneck, "basic": BasicBlock}
    if block not in kinds:
        raise ValueError(f"block must be 'bottleneck' or 'basic', got {block!r}")
    if len(blocks) != 4 or any(b < 0 for b in blocks) or sum(blocks) == 0:
        raise ValueError(f"blocks must list 4 non-negative counts with at least one block, got {blocks!r}")
    if stride < 1 or not width > 0 or not math.isfinite(width):
        raise ValueError(f"stride must be >= 1 and width a finite number > 0, got stride={stride!r}, "
                         f"width={width!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    kind = kinds[block]
    stem = max(8, round(64 * width))
    layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
    in_channels = stem
    for stage, count in enumerate(blocks):
        channels = max(4, round(64 * 2**stage * width))
        for i in range(count):
            first_stride = (stride if stage == 0 else 2) if i == 0 else 1
            layers.append(kind(in_channels, channels, first_stride))
            in_channels = channels * kind.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)]
    return nn.Sequential(*layers)
