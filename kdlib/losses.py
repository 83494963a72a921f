"""The two losses of the course: softmax cross-entropy and the distillation loss.

For logits ``z`` (student) and ``v`` (teacher) over ``C`` classes and a temperature ``T``:

* ``softmax_cross_entropy(z, y) = -z_y + log sum_c exp(z_c)``, averaged over the batch; ``y`` is
  a class index or a target distribution ``q`` (then ``-sum_c q_c log softmax(z)_c``).
* ``kd_divergence(z, v, T) = KL(softmax(v / T) || softmax(z / T))``: the teacher's softened
  distribution is the target; summed over classes, averaged over the batch ("batchmean").
* ``distillation_loss = label_weight * CE(z, y) + (1 - label_weight) * T**2 * KL``:
  ``label_weight`` weighs the hard labels (1: ordinary training; 0: the teacher alone) and the KD
  term gets the rest. (kdlib once called it ``alpha``; libraries disagree on which term ``alpha``
  weighs, so kdlib refuses that name with a message.) The ``T**2``
  keeps the gradient of the KD term on the same scale as ``T`` changes (Hinton et al., 2015):
  the gradient of the KL term alone shrinks like ``1 / T**2``.

Every function checks its inputs and raises a ``ValueError`` that says what is wrong.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_logits(name: str, logits: Tensor) -> None:
    """Logits must be a finite floating-point tensor of shape ``(batch, classes)``."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {type(logits).__name__} "
                         f"{getattr(logits, 'dtype', '')}")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape (batch, classes) with at least 2 classes, "
                         f"got {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError(f"{name} contains NaN or infinite values: check the model's outputs "
                         "(a too-large learning rate often causes this)")


TEMPERATURE_RANGE = (1e-4, 1e4)
"""Temperatures kdlib accepts. Outside it the loss is not computable to useful accuracy even in
double precision: far above, the softened distributions differ by less than rounding; far
below, ``z / T`` overflows."""


def as_number(name: str, value: object, hint: str) -> float:
    """``value`` as a float if it is a real number (an int, a float, a 0-d tensor or NumPy
    scalar); a string, ``None`` or a bool is refused with a message that names the setting."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        shown = f"{value!r} (a {type(value).__name__})"
        raise TypeError(f"{name} must be a number, got {shown}: pass a number such as {hint}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r} (a {type(value).__name__}): pass a number "
                        f"such as {hint}") from None


def check_temperature(temperature: float) -> float:
    """A temperature must be a number in :data:`TEMPERATURE_RANGE` (a string such as ``"4"`` is
    refused, never converted silently)."""
    t = as_number("temperature", temperature, "4.0")
    low, high = TEMPERATURE_RANGE
    if not low <= t <= high:  # also false for NaN
        raise ValueError(f"temperature must be a number in [{low:g}, {high:g}], got {temperature!r} "
                         "(T = 1 is the ordinary softmax; T > 1 softens it)")
    return t


def working_precision(logits: Tensor) -> torch.dtype:
    """The losses are computed in float64 (MPS, which lacks it, in float32): the logits of a batch
    are few, so this costs nothing measurable, and it keeps logits near float32's limit, float16
    logits at small T and ``T**2 * KL`` at large T accurate."""
    return torch.float32 if logits.device.type == "mps" else torch.float64


def result_dtype(logits: Tensor) -> torch.dtype:
    """Losses come back in the logits' dtype, but at least float32 (not bfloat16 or float16)."""
    return torch.promote_types(logits.dtype, torch.float32)


def check_label_weight(label_weight: float) -> float:
    """The weight of the hard-label loss must lie in [0, 1]."""
    a = as_number("label_weight", label_weight, "0.5")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"label_weight must be in [0, 1] (1: hard labels only, 0: teacher only), "
                         f"got {label_weight!r}")
    return a


def refuse_alpha(alpha: float | None) -> None:
    """kdlib's weight was called ``alpha`` until it was renamed ``label_weight``: a call that still
    passes ``alpha`` is refused, since other libraries use ``alpha`` for the *distillation* weight."""
    if alpha is not None:
        raise ValueError(
            f"kdlib no longer takes alpha (got alpha={alpha!r}): libraries disagree on which term alpha "
            "weighs. Pass label_weight, the weight of the hard-label loss (what kdlib's alpha meant; "
            f"the distillation term gets 1 - label_weight): label_weight={alpha!r} gives kdlib's old "
            f"loss, label_weight={1 - float(alpha):g} the loss of libraries whose alpha weighs the KD term")


def check_targets(targets: Tensor, logits: Tensor) -> None:
    """Targets are class indices ``(batch,)`` (int64) or distributions ``(batch, classes)``."""
    batch, classes = logits.shape
    if not isinstance(targets, Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    if targets.is_floating_point() and targets.dim() == 1:
        raise ValueError(f"hard targets must be int64 class indices, got {targets.dtype} "
                         "(use labels.long(); soft targets are distributions of shape (batch, classes))")
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            raise ValueError(f"soft targets must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(targets.shape)}")
        sums = targets.sum(dim=1)
        if (targets < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            raise ValueError("soft targets must be probability distributions: non-negative rows summing to 1")
        return
    if targets.dtype != torch.int64:
        raise ValueError(f"hard targets must be int64 class indices, got {targets.dtype} "
                         "(use labels.long())")
    if targets.shape != (batch,):
        raise ValueError(f"hard targets must have shape ({batch},), one class index per row, "
                         f"got {tuple(targets.shape)}")
    if batch and (targets.min() < 0 or targets.max() >= classes):
        raise ValueError(f"targets must be class indices in [0, {classes - 1}], "
                         f"got values from {targets.min().item()} to {targets.max().item()}")


def check_label_smoothing(eps: float) -> float:
    """Label smoothing ``eps`` must lie in [0, 1)."""
    e = as_number("label_smoothing", eps, "0.1")
    if not 0.0 <= e < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1) (0: plain one-hot labels), got {eps!r}")
    return e


def softmax_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0,
                          check: bool = True) -> Tensor:
    """Mean log-loss ``-z_y + log sum_c exp(z_c)`` for hard labels or soft target distributions.

    With ``label_smoothing = eps`` a hard label ``y`` becomes the fixed target
    ``(1 - eps) e_y + eps / C`` (a "teacher" that knows nothing about the input). ``check=False``
    skips the input checks (the training loop checks its first batch and then trusts the rest).
    """
    eps = check_label_smoothing(label_smoothing)
    if check:
        check_logits("logits", logits)
        check_targets(targets, logits)
        if len(logits) == 0:
            raise ValueError("the batch is empty: the mean loss of no examples is undefined")
    log_probs = F.log_softmax(logits.to(working_precision(logits)), dim=1)
    if targets.is_floating_point():
        loss = -(targets.to(log_probs.dtype) * log_probs).sum(dim=1).mean()
    else:
        loss = -log_probs.gather(1, targets.unsqueeze(1)).mean()
        if eps != 0.0:
            loss = (1.0 - eps) * loss - eps * log_probs.mean(dim=1).mean()
    return loss.to(result_dtype(logits))


def kd_divergence(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
                  check: bool = True) -> Tensor:
    """``KL(p_teacher^T || p_student^T)`` of temperature-softened softmaxes, batch-mean, unscaled."""
    t = check_temperature(temperature)
    if check:
        check_logits("student_logits", student_logits)
        check_logits("teacher_logits", teacher_logits)
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"student and teacher logits must have the same shape, got "
                             f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
        if len(student_logits) == 0:
            raise ValueError("the batch is empty: the mean divergence of no examples is undefined")
    work = working_precision(student_logits)
    log_p_student = F.log_softmax(student_logits.to(work) / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.to(work) / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1).mean()
    return kl.to(result_dtype(student_logits))


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor | None,
    temperature: float,
    label_weight: float | None = None,
    check: bool = True,
    *,
    alpha: float | None = None,
) -> Tensor:
    """``label_weight * cls_loss + (1 - label_weight) * T**2 * div_loss``; the report's
    ``cls_loss + div_loss`` is ``label_weight = 0.5`` (times 2).

    ``targets`` may be ``None`` only when ``label_weight == 0`` (a student taught by the teacher
    alone, with no ground-truth labels). ``alpha`` is the weight's old name, refused with a message.
    """
    refuse_alpha(alpha)
    if label_weight is None:
        raise TypeError("distillation_loss needs label_weight, the weight of the hard-label loss in [0, 1]")
    a = check_label_weight(label_weight)
    t = check_temperature(temperature)
    kd = kd_divergence(student_logits, teacher_logits, t, check=check)
    if targets is None:
        if a != 0.0:
            raise ValueError("targets are needed unless label_weight == 0 (teacher-only distillation)")
        return (t * t) * kd
    return a * softmax_cross_entropy(student_logits, targets, check=check) + (1.0 - a) * (t * t) * kd


class DistillationLoss(nn.Module):
    """:func:`distillation_loss` as a module with fixed ``temperature`` and ``label_weight``."""

    def __init__(self, temperature: float = 4.0, label_weight: float = 0.5, *,
                 alpha: float | None = None) -> None:
        super().__init__()
        refuse_alpha(alpha)
        self.temperature = check_temperature(temperature)
        self.label_weight = check_label_weight(label_weight)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor | None) -> Tensor:
        return distillation_loss(student_logits, teacher_logits, targets, self.temperature, self.label_weight)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, label_weight={self.label_weight}"
