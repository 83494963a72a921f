"""Hinton, Vinyals and Dean (2015), "Distilling the knowledge in a neural network": the label
term and the distillation term.

:class:`LabelTerm` is the softmax cross-entropy on the labels and :class:`KDTerm` the
temperature-softened KL divergence to the teacher, times ``T**2``; the functions they call are
derived in chapter 2 and live in :mod:`kdlib.losses`.
"""

from __future__ import annotations

from torch import Tensor

from kdlib.losses import check_label_smoothing, check_temperature, kd_divergence, softmax_cross_entropy
from kdlib.terms import Step, Term, register_term

__all__ = ["KDTerm", "LabelTerm"]


@register_term("label")
class LabelTerm(Term):
    """Softmax cross-entropy on the labels (:func:`kdlib.losses.softmax_cross_entropy`), with
    label smoothing ``label_smoothing``."""

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def __call__(self, step: Step) -> Tensor:
        if step.labels is None:
            raise ValueError("the label term needs labels: pass them to train, or leave the term out "
                             "(training on the teacher's outputs alone)")
        return softmax_cross_entropy(step.logits, step.labels, self.label_smoothing, check=step.check)


@register_term("kd")
class KDTerm(Term):
    """Hinton et al.'s distillation term ``T**2 * KL(p_teacher^T || p_student^T)``
    (:func:`kdlib.losses.kd_divergence`); the ``T**2`` keeps its gradient's scale as ``T``
    changes."""

    def __init__(self, weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(weight)
        self.temperature = check_temperature(temperature)

    def divergence(self, step: Step) -> Tensor:
        if step.teacher_logits is None:
            raise ValueError("the KD term needs a teacher: pass teacher_logits=... (precomputed) or "
                             "teacher=... (run on each batch) to train")
        return kd_divergence(step.logits, step.teacher_logits, self.temperature, check=step.check)

    def __call__(self, step: Step) -> Tensor:
        t = self.temperature
        return (t * t) * self.divergence(step)

    def weighted(self, step: Step) -> tuple[Tensor, Tensor]:
        """``weight * T**2`` multiplies the divergence as one number, as
        :func:`kdlib.losses.distillation_loss` does (so the two agree to the last bit)."""
        t = self.temperature
        kl = self.divergence(step)
        return (self.weight * (t * t)) * kl, (t * t) * kl.detach()
