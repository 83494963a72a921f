"""Zhao et al. (CVPR 2022), "Decoupled knowledge distillation" (DKD): KD split into a
target-class part and a non-target-class part, each with its own weight.

With temperature-softened probabilities ``p = softmax(z / T)`` and ``t`` the labelled class:

* **TCKD**, target-class KD: the KL divergence between the binary distributions
  ``b = (p_t, 1 - p_t)`` of teacher and student: how sure each is of the right class;
* **NCKD**, non-target-class KD: the KL divergence between the distributions over the *other*
  classes, ``p_hat_j = p_j / (1 - p_t)`` for ``j != t``: the teacher's "dark knowledge".

Hinton's KD is exactly ``KL(p_teacher || p_student) = TCKD + (1 - p_t^teacher) * NCKD``: the
dark knowledge is weighted by the teacher's non-target mass, which is small where the teacher is
confident, that is, on the examples it knows best. DKD frees the two weights:

    DKD = T**2 * (alpha * TCKD + beta * NCKD)

(``alpha = 1``, ``beta = 8`` on CIFAR-100 in the authors' code, mdistiller, which also ramps
the term's weight up linearly over the first 20 epochs; :class:`DKDTerm` takes ``warmup_steps``
for that). :func:`dkd_parts` returns the two parts so that the identity can be checked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.losses import check_temperature
from kdlib.methods.logit_std import standardize
from kdlib.terms import Step, Term, linear_ramp, register_term

__all__ = ["DKDTerm", "dkd_parts"]


def dkd_parts(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
              temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(TCKD, NCKD, teacher's target probability)``: the two parts per example, unscaled by
    ``T**2`` and not averaged, and ``p_t`` of the teacher at temperature ``T``, each of shape
    ``(N,)``. Computed in float32 at least."""
    t = check_temperature(temperature)
    work = torch.promote_types(student_logits.dtype, torch.float32)
    zs, zt = student_logits.to(work) / t, teacher_logits.to(work) / t
    target = F.one_hot(labels, zs.shape[1]).bool()
    log_ps, log_pt = F.log_softmax(zs, dim=1), F.log_softmax(zt, dim=1)
    # binary distributions (p_t, 1 - p_t), in logs: log(1 - p_t) = logsumexp over the other classes
    def binary(log_p: Tensor) -> Tensor:
        inside = log_p.masked_fill(~target, float("-inf")).logsumexp(dim=1)
        outside = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1)
        return torch.stack([inside, outside], dim=1)

    b_s, b_t = binary(log_ps), binary(log_pt)
    tckd = (b_t.exp() * (b_t - b_s)).sum(dim=1)
    # distributions over the non-target classes: the target's logit removed (set to -inf)
    log_qs = F.log_softmax(zs.masked_fill(target, float("-inf")), dim=1)
    log_qt = F.log_softmax(zt.masked_fill(target, float("-inf")), dim=1)
    q_t = log_qt.exp()
    nckd = (q_t * (log_qt - log_qs)).masked_fill(target, 0.0).sum(dim=1)
    return tckd, nckd, b_t[:, 0].exp()


@register_term("dkd")
class DKDTerm(Term):
    """``T**2 * mean(alpha * TCKD + beta * NCKD)`` (:func:`dkd_parts`), times ``min(1, step /
    warmup_steps)`` during the first ``warmup_steps`` steps; ``standardize=True`` standardizes
    both networks' logits first (:mod:`kdlib.methods.logit_std`). Needs labels and a teacher."""

    def __init__(self, weight: float = 1.0, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
                 warmup_steps: int = 0, standardize: bool = False) -> None:
        super().__init__(weight)
        if not (alpha >= 0 and beta >= 0):
            raise ValueError(f"alpha and beta must be >= 0, got {alpha!r} and {beta!r}")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = check_temperature(temperature)
        self.warmup_steps, self.standardize = int(warmup_steps), bool(standardize)
        self._steps = 0

    def __call__(self, step: Step) -> Tensor:
        if step.teacher_logits is None or step.labels is None:
            raise ValueError("DKD needs a teacher and labels (the target class): pass both to train")
        zs, zt = step.logits, step.teacher_logits
        if self.standardize:
            zs, zt = standardize(zs), standardize(zt)
        tckd, nckd, _ = dkd_parts(zs, zt, step.labels, self.temperature)
        self._steps += 1
        t = self.temperature
        return linear_ramp(self._steps, self.warmup_steps) * (t * t) * (self.alpha * tckd + self.beta * nckd).mean()
