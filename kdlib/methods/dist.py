"""Huang et al. (NeurIPS 2022), "Knowledge distillation from a stronger teacher" (DIST): match
the *relations* of the predictions, not their values.

KL divergence asks the student to reproduce the teacher's probabilities exactly. DIST relaxes
that to a correlation: with ``Y = softmax(z / T)`` for a batch (``N`` examples by ``C``
classes), and ``rho`` the Pearson correlation,

* **inter-class relation**: for each example, the correlation between the student's and the
  teacher's ``C`` class probabilities (does the student rank the classes alike?),
  ``L_inter = 1 - mean over examples of rho(Y_s[i, :], Y_t[i, :])``;
* **intra-class relation**: for each class, the correlation across the batch's examples
  (does the student find the same examples more or less like that class?),
  ``L_intra = 1 - mean over classes of rho(Y_s[:, j], Y_t[:, j])``;

    DIST = T**2 * (beta * L_inter + gamma * L_intra)

A correlation ignores shifts and scales of the predictions, so a student that cannot be as
confident as a much stronger teacher is not penalised for that. The authors use ``T = 4`` and
``beta = gamma = 1`` (2 and 2 on CIFAR-100).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdlib.losses import check_temperature
from kdlib.terms import Step, Term, linear_ramp, register_term

__all__ = ["DISTTerm", "pearson_rows"]

EPS = 1e-8


def pearson_rows(a: Tensor, b: Tensor) -> Tensor:
    """The Pearson correlation of each row of ``a`` with the same row of ``b`` (``EPS`` guards a
    constant row), as in the authors' code."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


@register_term("dist")
class DISTTerm(Term):
    """``T**2 * (beta * inter + gamma * intra)`` of :mod:`kdlib.methods.dist`, times ``min(1, step
    / warmup_steps)`` during the first ``warmup_steps`` steps (not in the paper; DKD's warm-up,
    kdlib's option: a correlation's gradient grows as ``1 / spread``, so a student whose first
    outputs are near uniform takes huge steps). Needs a teacher; the intra-class relation needs
    batches of more than one example."""

    def __init__(self, weight: float = 1.0, beta: float = 1.0, gamma: float = 1.0, temperature: float = 4.0,
                 warmup_steps: int = 0) -> None:
        super().__init__(weight)
        if not (beta >= 0 and gamma >= 0):
            raise ValueError(f"beta and gamma must be >= 0, got {beta!r} and {gamma!r}")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.beta, self.gamma = float(beta), float(gamma)
        self.temperature = check_temperature(temperature)
        self.warmup_steps, self._steps = int(warmup_steps), 0

    def __call__(self, step: Step) -> Tensor:
        if step.teacher_logits is None:
            raise ValueError("DIST needs a teacher: pass teacher_logits=... or teacher=... to train")
        t = self.temperature
        work = torch.promote_types(step.logits.dtype, torch.float32)
        y_s = (step.logits.to(work) / t).softmax(dim=1)
        y_t = (step.teacher_logits.to(work) / t).softmax(dim=1)
        inter = 1 - pearson_rows(y_s, y_t).mean()
        intra = 1 - pearson_rows(y_s.T, y_t.T).mean()
        self._steps += 1
        return linear_ramp(self._steps, self.warmup_steps) * (t * t) * (self.beta * inter + self.gamma * intra)
