"""Checkers for the exercises: call one on your answer and it tells you at once if it is right.

Each checker returns a :class:`Verdict`: a notebook shows it as one line (``Correct: ...`` or
``Not yet: ...`` with a hint), and ``bool(verdict)`` is ``True`` or ``False``, so an instructor's
grading script can use the same checkers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kdlib.losses import kd_divergence


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: true or false, with a message for the student."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.message


def verdict(ok: bool, good: str, hint: str) -> Verdict:
    return Verdict(ok, f"Correct: {good}" if ok else f"Not yet: {hint}")


def sample_logits(seed: int = 0, batch: int = 8, classes: int = 10) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, classes, generator=g, dtype=torch.float64) * 4,
            torch.randn(batch, classes, generator=g, dtype=torch.float64) * 4)


def run_answer(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except NotImplementedError:
        return NotImplemented
    except Exception as exc:  # a student's bug: report it rather than crash the notebook
        return exc


def check_softened_softmax(fn: Callable[[Tensor, float], Tensor]) -> Verdict:
    """Exercise: ``fn(logits, T)`` returns the temperature-softened softmax, row by row."""
    logits, _ = sample_logits()
    for temperature in (0.5, 1.0, 3.5, 20.0):
        answer = run_answer(fn, logits, temperature)
        if answer is NotImplemented:
            return verdict(False, "", "the function still raises NotImplementedError: fill it in.")
        if isinstance(answer, Exception):
            return verdict(False, "", f"calling it raised {type(answer).__name__}: {answer}")
        expected = torch.softmax(logits / temperature, dim=1)
        if not isinstance(answer, Tensor) or answer.shape != expected.shape:
            return verdict(False, "", f"expected a tensor of shape {tuple(expected.shape)}.")
        if not torch.allclose(answer.double(), expected, atol=1e-6):
            if torch.allclose(answer.double(), torch.softmax(logits * temperature, 1), atol=1e-6):
                return verdict(False, "", "you multiplied by T; divide the logits by T instead.")
            return verdict(False, "", f"wrong values at T = {temperature}: each row should be "
                           "softmax(logits / T) and sum to 1.")
    return verdict(True, "softmax(z / T) matches at T = 0.5, 1, 3.5 and 20.", "")


def check_kd_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> Verdict:
    """Exercise: ``fn(student_logits, teacher_logits, T)`` returns ``T**2 * KL(p_t || p_s)`` (batch mean)."""
    student, teacher = sample_logits(1)
    for temperature in (1.0, 4.0):
        answer = run_answer(fn, student, teacher, temperature)
        if answer is NotImplemented:
            return verdict(False, "", "the function still raises NotImplementedError: fill it in.")
        if isinstance(answer, Exception):
            return verdict(False, "", f"calling it raised {type(answer).__name__}: {answer}")
        expected = temperature**2 * kd_divergence(student, teacher, temperature)
        value = torch.as_tensor(answer, dtype=torch.float64)
        if value.numel() != 1:
            return verdict(False, "", "return a single number (a 0-d tensor): average over the batch.")
        if torch.allclose(value, expected, rtol=1e-6):
            continue
        hint = f"wrong value at T = {temperature}."
        unscaled = kd_divergence(student, teacher, temperature)
        reverse = temperature**2 * kd_divergence(teacher, student, temperature)
        if torch.allclose(value, unscaled, rtol=1e-6) and temperature != 1.0:
            hint = "you forgot the factor T**2."
        elif torch.allclose(value, reverse, rtol=1e-6):
            hint = "you computed KL(student || teacher); the teacher's distribution is the target."
        elif torch.allclose(value, expected / student.shape[1], rtol=1e-6):
            hint = "you divided by the number of classes too (reduction='mean'); use 'batchmean'."
        return verdict(False, "", hint)
    return verdict(True, "T^2 * KL(teacher || student), batch mean, matches at T = 1 and 4.", "")


def check_flops(answer: int, hidden: int, in_features: int = 784, classes: int = 10) -> Verdict:
    """Exercise: FLOPs per example of ``in_features-hidden-classes`` (multiply-add = 2 FLOPs)."""
    expected = 2 * (in_features * hidden + hidden * classes)
    if answer == expected:
        return verdict(True, f"{expected:,} FLOPs per example.", "")
    if answer == expected // 2:
        return verdict(False, "", "that counts multiply-adds; a multiply-add is 2 FLOPs.")
    return verdict(False, "", "count 2 FLOPs for each weight of each linear layer (biases are free).")


def check_close(answer: float, expected: float, name: str, rtol: float = 1e-3) -> Verdict:
    """Exercise with a numerical answer: ``answer`` within relative ``rtol`` of ``expected``."""
    ok = bool(np.isfinite(answer)) and abs(answer - expected) <= rtol * abs(expected)
    return verdict(ok, f"{name} = {expected:.6g}.", f"{name} should be about {expected:.3g}, "
                   f"not {answer:.6g}: re-read the definition and check each expectation.")


def check_crossover_n(answer: float, problem, losses: np.ndarray, teacher: np.ndarray) -> Verdict:
    """Exercise: the sample size below which a fixed teacher's E[Delta^2] beats one-hot labels'."""
    from kdlib import theory

    empirical = theory.exact_moments(problem, losses, None).variance
    terms = theory.lemma2_terms(problem, losses, teacher, n=1)
    return check_close(answer, (empirical - terms.variance_term) / terms.squared_bias, "N*")


def check_ece(fn: Callable[[Tensor, Tensor, int], float]) -> Verdict:
    """Exercise: ``fn(probs, labels, bins)`` returns the expected calibration error."""
    from kdlib.calibration import expected_calibration_error

    g = torch.Generator().manual_seed(7)
    probs = torch.softmax(torch.randn(400, 10, generator=g) * 3, dim=1)
    labels = torch.randint(0, 10, (400,), generator=g)
    labels[:200] = probs[:200].argmax(dim=1)  # some right, some wrong
    answer = run_answer(fn, probs, labels, 15)
    if answer is NotImplemented:
        return verdict(False, "", "the function still raises NotImplementedError: fill it in.")
    if isinstance(answer, Exception):
        return verdict(False, "", f"calling it raised {type(answer).__name__}: {answer}")
    expected = expected_calibration_error(probs, labels, 15)
    value = float(answer)  # type: ignore[arg-type]
    if abs(value - expected) <= 1e-5:
        return verdict(True, f"ECE = {expected:.4f} on the test predictions.", "")
    confidence, predicted = probs.max(dim=1)
    unweighted = abs((predicted == labels).float().mean() - confidence.mean()).item()
    if abs(value - unweighted) <= 1e-5:
        return verdict(False, "", "you compared the overall accuracy with the overall confidence; "
                       "compare them bin by bin and weight each bin by its share.")
    return verdict(False, "", f"expected {expected:.4f}, got {value:.4f}: bin by confidence (the largest "
                   "probability), weight each bin's |accuracy - confidence| by its share of the predictions.")


PAIRED_EXERCISE = ([95.1, 95.4, 94.9, 95.3, 95.0], [89.8, 90.2, 89.5, 90.1, 89.6])


def check_paired_interval(low: float, high: float) -> Verdict:
    """Exercise: the 95% paired-t confidence interval of :data:`PAIRED_EXERCISE`'s gain."""
    from kdlib.stats import paired_gap

    gap = paired_gap(*PAIRED_EXERCISE)
    if abs(low - gap.low) <= 1e-3 and abs(high - gap.high) <= 1e-3:
        return verdict(True, f"gain {gap.mean:.2f}, 95% CI [{gap.low:.3f}, {gap.high:.3f}].", "")
    if abs((low + high) / 2 - gap.mean) > 1e-3:
        return verdict(False, "", f"the interval should be centred on the mean paired difference, {gap.mean:.2f}.")
    return verdict(False, "", "use the standard deviation of the differences (n - 1 in the denominator), "
                   "divided by sqrt(5), times the t quantile t(0.975, 4) = 2.776.")
