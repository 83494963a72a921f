"""Sun et al. (CVPR 2024), "Logit standardization in knowledge distillation": z-score the logits
of each example before the KD term.

Hinton's KD divides both networks' logits by one shared temperature ``T``, so it asks the
student to match the teacher's logits up to a shift *and their scale*: a small student whose
logits cannot grow as large as the teacher's is penalised for a difference of scale, not of
ranking. Standardization removes that coupling: each example's logit vector ``z`` becomes

    std(z) = (z - mean(z)) / stdev(z)

(mean and standard deviation over the classes; the sample standard deviation, as the authors'
code computes it), so only the *shape* of the logit vector is matched, and the temperature is
then a base temperature applied to unit-variance logits. :func:`standardize` is usable before
any logit term: :class:`StandardizedKDTerm` is KD on standardized logits (``"kd-std"``), and
:class:`kdlib.methods.dkd.DKDTerm` takes ``standardize=True``.
"""

from __future__ import annotations

from torch import Tensor

from kdlib.losses import check_temperature, kd_divergence
from kdlib.terms import Step, Term, register_term

__all__ = ["StandardizedKDTerm", "standardize"]

EPS = 1e-7
"""Added to the standard deviation, as in the authors' code (a constant logit vector stays finite)."""


def standardize(logits: Tensor) -> Tensor:
    """Each row of ``logits`` ``(N, C)`` minus its mean, divided by its sample standard deviation
    (plus :data:`EPS`), computed in float32 at least."""
    z = logits.float() if logits.dtype.itemsize < 4 else logits
    mean = z.mean(dim=1, keepdim=True)
    return (z - mean) / (z.std(dim=1, keepdim=True) + EPS)


@register_term("kd-std")
class StandardizedKDTerm(Term):
    """KD on standardized logits: ``T**2 * KL(softmax(std(z_t)/T) || softmax(std(z_s)/T))``.
    The authors use base temperatures of about 2 on CIFAR-100 (``temperature=2.0``)."""

    def __init__(self, weight: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__(weight)
        self.temperature = check_temperature(temperature)

    def __call__(self, step: Step) -> Tensor:
        if step.teacher_logits is None:
            raise ValueError("the standardized KD term needs a teacher: pass teacher_logits=... or teacher=... to train")
        t = self.temperature
        return (t * t) * kd_divergence(standardize(step.logits), standardize(step.teacher_logits), t,
                                       check=step.check)
