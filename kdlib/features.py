"""Feature-based knowledge: FitNets hints (Romero et al. 2015).

The student learns to reproduce, at one of its intermediate stages (the *guided* layer), the
feature maps of one of the teacher's stages (the *hint*), through a learned regressor (a 1x1
convolution, since the two networks have different numbers of channels):

    hint loss = mean over batch, channels and positions of (r(F_student) - F_teacher)^2 .

Feature maps are taken with forward hooks on the last block of a stage of a
:func:`kdlib.models.cifar_resnet` (:func:`stage_ends` finds it; a stage with zero blocks has no
output). :class:`HintTerm` adds ``weight * hint loss`` to the loss through
:func:`kdlib.train.train`'s ``extra_loss``, trained jointly with the distillation loss, as in
later re-implementations (e.g. Tian et al.'s RepDistiller), rather than in Romero et al.'s two
separate stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

STEM_LAYERS = 3
"""cifar_resnet's layers before the first block: convolution, batch norm, ReLU."""


def stage_ends(blocks: Sequence[int]) -> dict[int, int]:
    """For each stage with at least one block, the position in ``cifar_resnet(blocks, ...)`` of
    its last block: ``{stage: index}``. Stages with zero blocks are absent."""
    ends, position = {}, STEM_LAYERS
    for stage, count in enumerate(blocks):
        if count < 0:
            raise ValueError(f"block counts must be >= 0, got {list(blocks)}")
        position += count
        if count:
            ends[stage] = position - 1
    return ends


def feature_shape(blocks: Sequence[int], stage: int, block: str = "bottleneck", stride: int = 1,
                  width: float = 1.0, size: int = 32) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the output of ``stage`` for a ``size x size`` input:
    the first stage divides the resolution by ``stride`` (if it has blocks: the stride belongs to
    its first block); every later stage that has blocks halves it."""
    if stage not in stage_ends(blocks):
        raise ValueError(f"stage {stage} has no blocks in {list(blocks)}: stages with blocks are "
                         f"{sorted(stage_ends(blocks))}")
    expansion = 4 if block == "bottleneck" else 1
    side = size // stride if blocks[0] else size
    side //= 2 ** sum(1 for s in range(1, stage + 1) if blocks[s])
    return max(4, round(64 * 2**stage * width)) * expansion, side, side


class FeatureTap:
    """Keeps the latest output of one module (a forward hook); :meth:`remove` detaches it."""

    def __init__(self, module: nn.Module) -> None:
        self.output: Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.output = output

    def remove(self) -> None:
        self._handle.remove()
        self.output = None


def tap_stage(model: nn.Sequential, blocks: Sequence[int], stage: int) -> FeatureTap:
    """A :class:`FeatureTap` on the output of ``stage`` of ``cifar_resnet(blocks, ...)``."""
    ends = stage_ends(blocks)
    if stage not in ends:
        raise ValueError(f"stage {stage} has no blocks in {list(blocks)}: stages with blocks are {sorted(ends)}")
    return FeatureTap(model[ends[stage]])


class HintedStudent(nn.Module):
    """The student with the FitNets regressor attached, so that one optimiser trains both; its
    output is the student's. After training, use :attr:`student` alone."""

    def __init__(self, student: nn.Module, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.student = student
        self.regressor = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.student(x)


class HintTerm:
    """``weight * mean((regressor(student stage) - teacher stage)^2)`` for ``extra_loss``.

    The teacher must run on each batch (``train(..., teacher=...)``) so that its hooked stage
    has an output for the batch; when the two maps differ in size, the larger is average-pooled
    down to the smaller.
    """

    def __init__(self, hinted: HintedStudent, student_tap: FeatureTap, teacher_tap: FeatureTap,
                 weight: float = 1.0) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        self.hinted, self.student_tap, self.teacher_tap, self.weight = hinted, student_tap, teacher_tap, weight

    def __call__(self, student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor | None) -> Tensor:
        guided, hint = self.student_tap.output, self.teacher_tap.output
        if guided is None or hint is None:
            raise ValueError("no feature maps were recorded: train with teacher=... (the teacher must run "
                             "on each batch) and tap stages that exist")
        guided = self.hinted.regressor(guided.float())
        hint = hint.float().clone()  # an inference-mode tensor from the frozen teacher
        if guided.shape[-1] > hint.shape[-1]:
            guided = F.adaptive_avg_pool2d(guided, hint.shape[-2:])
        elif hint.shape[-1] > guided.shape[-1]:
            hint = F.adaptive_avg_pool2d(hint, guided.shape[-2:])
        return self.weight * F.mse_loss(guided, hint)

    def remove(self) -> None:
        """Detach both hooks (call when training is over)."""
        self.student_tap.remove()
        self.teacher_tap.remove()
