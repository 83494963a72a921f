"""The networks of the course.

* :func:`mlp`: fully connected networks for MNIST: the report's teacher 784-1200-1200-10 and its
  one-hidden-layer students 784-H-10 (H = 50, 300, 600).
* :func:`cifar_resnet`: ResNets for CIFAR-10 with a configurable number of blocks per stage
  (zero included), first-stage stride and width, with named stages;
* :class:`Ensemble`: several trained models as one teacher (averaged logits or probabilities).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn


class MaxNormLinear(nn.Linear):
    """A linear layer whose units' incoming weight vectors have a norm of at most ``max_norm``
    (Srivastava et al.'s max-norm constraint, which Hinton et al. (2015) used with dropout).

    As in Srivastava et al., the constraint is a *projection* after each optimiser step:
    :meth:`constrain_` rescales, in place and without gradients, every row of the weight whose
    norm exceeds ``max_norm``; :func:`kdlib.train.train` calls it after every step (a loop of
    your own must call :func:`constrain` after ``optimizer.step()``). The forward pass is that of
    an ordinary ``nn.Linear``, so the saved weights are the weights used. (Rescaling inside the
    forward pass instead, with autograd through the rescaling, made the teacher of chapter 9
    several times slower: ``benchmarks/max_norm.py``.)"""

    def __init__(self, in_features: int, out_features: int, max_norm: float) -> None:
        super().__init__(in_features, out_features)
        if not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
        self.max_norm = max_norm
        self.constrain_()

    @torch.no_grad()
    def constrain_(self) -> None:
        """Rescale each unit's incoming weights whose norm exceeds ``max_norm`` onto it."""
        self.weight.renorm_(p=2, dim=0, maxnorm=self.max_norm)


def constrain(model: nn.Module) -> None:
    """Apply the constraint of every layer of ``model`` that has one (``constrain_()``, e.g.
    :class:`MaxNormLinear`): call it after each optimiser step."""
    for module in constrained_modules(model):
        module.constrain_()


def constrained_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` with a constraint to apply after each step (``constrain_()``)."""
    return [m for m in model.modules() if callable(getattr(m, "constrain_", None))]


def mlp(hidden: list[int] | tuple[int, ...], in_features: int = 784, num_classes: int = 10,
        dropout: float = 0.0, input_dropout: float = 0.0,
        max_norm: float | None = None) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_features -> hidden[0] -> ... -> num_classes``.

    The input is flattened first, so the network takes images ``(N, 1, 28, 28)`` directly.
    ``dropout`` (a probability) is applied after every hidden layer when it is above 0, and
    ``input_dropout`` to the input pixels (Hinton et al.'s teacher used 0.2 there, 0.5 after
    the hidden layers). ``max_norm``: the hidden layers are :class:`MaxNormLinear`.
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
        linear = nn.Linear(width, h) if max_norm is None else MaxNormLinear(width, h, max_norm)
        layers += [linear, nn.ReLU()]
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


class Ensemble(nn.Module):
    """A teacher made of several trained models, used as one network.

    ``average="logits"``: the mean of the members' logits. ``average="probabilities"``: logits
    whose softened softmax at ``temperature`` is the mean of the members' softened softmaxes,
    ``T * log(mean_i softmax(z_i / T))``, computed with ``logsumexp`` (no probability underflows
    to a log of zero); distil from it at the same ``T``. An ensemble is a teacher: its forward
    pass runs each member in eval mode and without gradients, then restores the member's mode;
    the member models themselves are not changed (their ``requires_grad`` and mode stay as
    they were, so a model can be both a member and trained further)."""

    def __init__(self, members: list[nn.Module] | tuple[nn.Module, ...], average: str = "logits",
                 temperature: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member model")
        if average not in ("logits", "probabilities"):
            raise ValueError(f"average must be 'logits' or 'probabilities', got {average!r}")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.members = nn.ModuleList(members)
        self.average, self.temperature = average, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        with torch.no_grad():
            for member in self.members:
                was_training = member.training
                member.eval()
                try:
                    outputs.append(member(x).float())
                finally:
                    member.train(was_training)
        shapes = sorted({tuple(o.shape) for o in outputs})
        if len(shapes) > 1:
            raise ValueError(f"the ensemble's members give outputs of different shapes {shapes}: every member must "
                             "predict the same classes (check each model's num_classes)")
        logits = torch.stack(outputs)  # (members, N, classes)
        if self.average == "logits":
            return logits.mean(dim=0)
        t = self.temperature
        return t * (torch.logsumexp(torch.log_softmax(logits / t, dim=-1), dim=0) - math.log(len(logits)))


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


STAGES = ("stage1", "stage2", "stage3", "stage4")
"""The names of a :func:`cifar_resnet`'s four stages (a stage with zero blocks is left out)."""


def stem_channels(width: float) -> int:
    """Channels of the stem's 3x3 convolution: 64 times ``width``, at least 8."""
    return max(8, round(64 * width))


def stage_channels(stage: int, width: float) -> int:
    """Channels of the blocks of stage ``stage`` (1 to 4) before the block's expansion: 64, 128,
    256, 512 times ``width``, at least 4. The one place the width formula is written."""
    return max(4, round(64 * 2 ** (stage - 1) * width))


def cifar_resnet(blocks: list[int] | tuple[int, ...], block: str = "bottleneck", stride: int = 1,
                 width: float = 1.0, num_classes: int = 10) -> nn.Sequential:
    """A ResNet for 32x32 images (3x3 stem, no max-pool), as in He et al. (2016) for CIFAR.

    ``blocks`` gives the number of residual blocks in each of the four stages (64, 128, 256,
    512 channels before expansion, times ``width``); a stage with 0 blocks is left out, so
    ``[2, 2, 0, 0]`` is a two-stage network. ``stride`` is the stride of the first stage (the
    report's "stride of the base block"); later stages halve the resolution. ``block`` is
    ``"bottleneck"`` (ResNet-50: ``blocks=[3, 4, 6, 3]``) or ``"basic"`` (ResNet-18:
    ``[2, 2, 2, 2]``).

    The network's children are named: ``stem`` (convolution, batch norm, ReLU), ``stage1`` to
    ``stage4`` (the stages that have blocks, each an ``nn.Sequential`` of blocks) and ``head``
    (average pooling, flattening, the linear classifier). ``model.stage2`` is the second stage,
    ``model.head[-1]`` the classifier, and ``"stage2"`` is what a term's feature map names
    (:mod:`kdlib.terms`); :func:`kdlib.features.stage_shapes` gives each stage's output shape.
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
    in_channels = stem_channels(width)
    parts: dict[str, nn.Module] = {"stem": nn.Sequential(nn.Conv2d(3, in_channels, 3, 1, 1, bias=False),
                                                         nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))}
    for number, count in enumerate(blocks, start=1):
        if not count:
            continue
        channels, stage = stage_channels(number, width), []
        for i in range(count):
            first_stride = (stride if number == 1 else 2) if i == 0 else 1
            stage.append(kind(in_channels, channels, first_stride))
            in_channels = channels * kind.expansion
        parts[STAGES[number - 1]] = nn.Sequential(*stage)
    parts["head"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))
    return nn.Sequential(OrderedDict(parts))
