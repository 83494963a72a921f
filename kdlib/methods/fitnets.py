"""FitNets (Romero et al., ICLR 2015): hints from the teacher's intermediate feature maps.

The student learns to reproduce, at one of its intermediate stages (the *guided* layer), the
feature maps of one of the teacher's stages (the *hint*), through a learned regressor (a 1x1
convolution, since the two networks have different numbers of channels):

    hint loss = mean over batch, channels and positions of (r(F_student) - F_teacher)^2 .

:class:`FitNetsTerm` is the hint as a term of :mod:`kdlib.terms` (``train(..., terms=[...])``):
its regressor is its own (:meth:`FitNetsTerm.parameters`), trained jointly with the
distillation loss, as in later re-implementations (e.g. Tian et al.'s RepDistiller), rather
than in Romero et al.'s two separate stages; ``train`` hooks the two stages (:mod:`kdlib.features`)
and removes the hooks when it is done.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.terms import Step, Term, register_term

__all__ = ["FitNetsTerm", "hint_loss"]


def hint_loss(regressor: nn.Module, guided: Tensor, hint: Tensor) -> Tensor:
    """``mean((regressor(guided) - hint)^2)``, the larger map average-pooled to the
    smaller's size."""
    guided = regressor(guided.float())
    hint = hint.float()
    if guided.shape[-1] > hint.shape[-1]:
        guided = F.adaptive_avg_pool2d(guided, hint.shape[-2:])
    elif hint.shape[-1] > guided.shape[-1]:
        hint = F.adaptive_avg_pool2d(hint, guided.shape[-2:])
    return F.mse_loss(guided, hint)


@register_term("fitnets")
class FitNetsTerm(Term):
    """The FitNets hint as a term: ``mean((regressor(student map) - teacher map)^2)``.

    ``student_layer`` and ``teacher_layer`` name the hooked modules (``named_modules()`` names,
    e.g. ``"stage2"``); the 1x1 convolution ``regressor`` from ``student_channels`` to
    ``teacher_channels`` (:func:`kdlib.features.stage_shapes`) is made here, from PyTorch's global random
    generator, and trained with the student (:meth:`parameters`). Train with ``teacher=...``
    (run on each batch).
    """

    def __init__(self, student_layer: str, teacher_layer: str, student_channels: int, teacher_channels: int,
                 weight: float = 1.0) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        super().__init__(weight)
        self.features = (f"student.{student_layer}", f"teacher.{teacher_layer}")
        self.regressor = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.regressor.parameters())

    def __call__(self, step: Step) -> Tensor:
        guided, hint = (step.features[name] for name in self.features)
        return hint_loss(self.regressor.to(guided.device), guided, hint)
