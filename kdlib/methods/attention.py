"""Attention transfer (Zagoruyko and Komodakis, ICLR 2017): match where the networks look.

Attention transfer (Zagoruyko and Komodakis, 2017), :class:`AttentionTerm` (``"at"``), matches
*where* the two networks look rather than what they compute there: the spatial attention map of
a feature map ``F`` of shape ``(C, H, W)`` is ``A = mean_c F_c**2``, flattened to ``H * W``
values and divided by its L2 norm, and the term is

    AT = (1 / P) * sum over the P pairs of mean over the batch of || A_student - A_teacher ||_2 .

The paper adds ``beta / 2 * sum_j || A_S^j - A_T^j ||_p`` with ``p = 2`` to the loss of an
example; kdlib takes the mean over the pairs instead of their sum (so that the scale does not
grow with their number), so ``weight * AT`` is the paper's term with ``beta = 2 * weight / P``.
The authors' code (and RepDistiller, the benchmark of Tian et al. 2020) uses instead the sum
over the pairs of the mean over batch and positions of the *squared* differences, with weight
``beta = 1000``: ``squared=True`` computes that form. Mean or sum over channels gives the same map after the
normalisation. When the two maps differ in size, the larger attention map is average-pooled to
the smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.terms import Step, Term, layer_pairs, register_term

__all__ = ["AttentionTerm", "attention_map", "attention_transfer_loss"]


def attention_map(features: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """``(N, C, H, W) -> (N, H * W)``: the mean over channels of the squared activations
    (average-pooled to ``size`` if given), flattened, divided by its L2 norm (computed in
    float32 at least)."""
    if features.dim() != 4:
        raise ValueError("attention maps are made from feature maps (batch, channels, "
                         f"height, width), got shape {tuple(features.shape)}")
    energy = features.float().pow(2).mean(dim=1, keepdim=True)
    if size is not None and tuple(energy.shape[-2:]) != tuple(size):
        energy = F.adaptive_avg_pool2d(energy, size)
    return F.normalize(energy.flatten(1), p=2, dim=1)


def attention_transfer_loss(student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor],
                            squared: bool = False) -> Tensor:
    """Mean over the pairs of mean over the batch of ``||A_student - A_teacher||_2`` (the
    module's docstring); with ``squared``, the sum over the pairs of the mean over batch and
    positions of ``(A_student - A_teacher)**2`` (the authors' code). The teacher's maps are
    detached: no gradient reaches the teacher."""
    if len(student_maps) != len(teacher_maps) or not student_maps:
        raise ValueError("attention transfer pairs student and teacher maps: got "
                         f"{len(student_maps)} and {len(teacher_maps)}")
    losses = []
    for s, t in zip(student_maps, teacher_maps):
        if len(s) != len(t):
            raise ValueError("student and teacher maps must have the same batch size, "
                             f"got {len(s)} and {len(t)}")
        size = tuple(min(a, b) for a, b in zip(s.shape[-2:], t.shape[-2:]))
        a_s, a_t = attention_map(s, size), attention_map(t.detach(), size)
        if squared:
            losses.append((a_s - a_t).pow(2).mean())
        else:
            losses.append(torch.linalg.vector_norm(a_s - a_t, dim=1).mean())
    return torch.stack(losses).sum() if squared else torch.stack(losses).mean()


@register_term("at")
class AttentionTerm(Term):
    """Attention transfer: ``pairs`` lists ``(student module, teacher module)`` names (e.g.
    ``("stage1", "stage2")``); the value is :func:`attention_transfer_loss` of
    their outputs (``squared``: the authors' form, used with ``weight=1000``). It has no
    parameters (maps of different channel counts compare directly). Train with ``teacher=...``
    (run on each batch)."""

    def __init__(self, pairs: Sequence[tuple[str, str]], weight: float = 1.0, squared: bool = False) -> None:
        super().__init__(weight)
        self.squared = bool(squared)
        self.pairs, self.features = layer_pairs(pairs, "attention transfer")

    def __call__(self, step: Step) -> Tensor:
        student = [step.features[f"student.{s}"] for s, _ in self.pairs]
        teacher = [step.features[f"teacher.{t}"] for _, t in self.pairs]
        return attention_transfer_loss(student, teacher, self.squared)
