"""Tung and Mori (ICCV 2019), "Similarity-preserving knowledge distillation" (SP): the student
should find the same pairs of examples alike as the teacher does.

For a batch of ``b`` examples and a feature map ``A`` of each network (flattened to ``b`` rows),
the *similarity matrix* ``G = A A^T`` (``b x b``) says how alike each pair of examples is; each
row is divided by its L2 norm. The term is the mean squared difference of the two matrices,

    SP = (1 / b**2) * || G_teacher - G_student ||_F**2 ,

summed over the pairs of layers. The two networks' feature maps may have any sizes: only the
``b x b`` matrices are compared, so no regressor is needed. Tung and Mori (and RepDistiller,
with the last feature map) use ``gamma = 3000`` as the term's weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.terms import Step, Term, layer_pairs, register_term

__all__ = ["SPTerm", "similarity_loss"]


def similarity_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """``|| G_t - G_s ||_F**2 / b**2`` for one pair of feature maps (batch first)."""
    if len(student) != len(teacher):
        raise ValueError(f"student and teacher maps must have the same batch size, got {len(student)} and {len(teacher)}")
    a_s, a_t = student.float().flatten(1), teacher.detach().float().flatten(1)
    g_s, g_t = F.normalize(a_s @ a_s.T, dim=1), F.normalize(a_t @ a_t.T, dim=1)
    return (g_t - g_s).pow(2).sum() / len(student) ** 2


@register_term("sp")
class SPTerm(Term):
    """Similarity preservation: ``pairs`` lists ``(student module, teacher module)`` names; the
    value is the sum of :func:`similarity_loss` over them. Train with ``teacher=...``."""

    def __init__(self, pairs: Sequence[tuple[str, str]], weight: float = 1.0) -> None:
        super().__init__(weight)
        self.pairs, self.features = layer_pairs(pairs, "SP")

    def __call__(self, step: Step) -> Tensor:
        return torch.stack([similarity_loss(step.features[f"student.{s}"], step.features[f"teacher.{t}"])
                            for s, t in self.pairs]).sum()
