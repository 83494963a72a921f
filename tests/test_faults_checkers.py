"""Fault injection for the exercise checkers (issue 20, "checkers fooled or crashing"): each
case fooled or crashed a checker before it took answers one way (``kdlib.course.checks.number``,
``tensor`` and ``call``: expectations first, copies to the student, plain numbers, hints
instead of exceptions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlib import theory
from kdlib.course import checks
from kdlib.data import normalize


class Liar:
    """An answer that says yes to every comparison and every arithmetic question."""

    def __eq__(self, other: object) -> bool:
        return True

    __le__ = __lt__ = __ge__ = __gt__ = __eq__

    def __ne__(self, other: object) -> bool:
        return False

    def __sub__(self, other: object) -> int:
        return 0

    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __sub__

    def __abs__(self) -> int:
        return 0

    __hash__ = object.__hash__


class LyingFloat(float):
    """A float (a wrong one) that claims to equal, and to be close to, anything."""

    def __eq__(self, other: object) -> bool:
        return True

    __le__ = __lt__ = __ge__ = __gt__ = __eq__

    def __ne__(self, other: object) -> bool:
        return False

    def __sub__(self, other: object) -> LyingFloat:
        return LyingFloat(0.0)

    __rsub__ = __sub__

    def __abs__(self) -> LyingFloat:
        return LyingFloat(0.0)

    __hash__ = float.__hash__


def value_checkers(digits, problem_and_losses):
    """Each checker that takes a value, as a function of that value."""
    problem, losses = problem_and_losses
    teacher = theory.tempered_teacher(problem.bayes, 2.0)
    return {
        "flops": lambda a: checks.check_flops(a, hidden=300),
        "close": lambda a: checks.check_close(a, 0.3549, "x"),
        "crossover": lambda a: checks.check_crossover_n(a, problem, losses, teacher),
        "paired": lambda a: checks.check_paired_interval(a, a),
        "fake_quant": checks.check_fake_quantized,
        "int8": checks.check_int8_size,
        "test_mean": lambda a: checks.check_mnist_test_mean(a, digits),
        "gradient_factor": checks.check_gradient_factor,
        "data_worth": lambda a: checks.check_data_worth(a, problem, losses),
        "best_tau": lambda a: checks.check_best_tau(a, problem, losses),
        "stride": checks.check_stride_factor,
    }


# --- expectations first, copies to the student ---------------------------------------------------

def test_a_function_that_zeroes_its_input_is_not_correct() -> None:
    def zeroing(logits, T):
        logits.zero_()
        return torch.softmax(logits / T, dim=1)

    assert not checks.check_softened_softmax(zeroing)
    before = checks.sample_logits()[0].clone()
    checks.check_softened_softmax(zeroing)
    assert torch.equal(checks.sample_logits()[0], before)

    def zeroing_loss(s, t, T):
        s.data.zero_()
        t.zero_()
        return (s * 0).sum()

    assert not checks.check_kd_loss(zeroing_loss)


def test_check_normalization_cannot_change_the_dataset(digits) -> None:
    before = digits.train_images.clone()

    def mutating(images):
        images.zero_()
        return normalize(images, digits.mean, digits.std)

    assert not checks.check_normalization(mutating, digits)
    assert torch.equal(digits.train_images, before)


# --- answers of the wrong type: a hint, never an exception ---------------------------------------

BAD_VALUES = [None, "0.5", np.array([1.0, 2.0]), torch.tensor([1.0, 2.0]), [0.1, 0.2], {"a": 1},
              object(), True, float("nan")]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda b: type(b).__name__)
def test_value_checkers_answer_bad_types_with_a_hint(bad, digits, problem_and_losses) -> None:
    for name, check in value_checkers(digits, problem_and_losses).items():
        result = check(bad)
        assert isinstance(result, checks.Verdict) and not result, name
        assert result.message.startswith("Not yet: "), name
    none = checks.check_close(None, 0.3549, "x")
    assert "None" in repr(none) and "return" in repr(none)


@pytest.mark.parametrize("bad", [None, "0.5", np.array([[1.0]]), object(), 3],
                         ids=lambda b: type(b).__name__)
def test_function_checkers_answer_bad_results_with_a_hint(bad, digits) -> None:
    for check in (checks.check_softened_softmax, checks.check_kd_loss, checks.check_kd_gradient,
                  checks.check_ece, lambda fn: checks.check_normalization(fn, digits)):
        result = check(lambda *args: bad)
        assert isinstance(result, checks.Verdict) and not result
        assert result.message.startswith("Not yet: ")
    assert "return" in repr(checks.check_kd_loss(lambda *args: None))
    assert "return" in repr(checks.check_ece(lambda *args: None))


def test_checkers_answer_a_non_function_with_a_hint(digits) -> None:
    for check in (checks.check_softened_softmax, checks.check_kd_loss, checks.check_ece):
        result = check(0.5)
        assert not result and "function itself" in repr(result)
    assert not checks.check_schemes({"a": 5}) and "pair" in repr(checks.check_schemes({"a": 5}))
    assert not checks.check_schemes([1, 2])
    assert not checks.check_equality_example("problem", np.zeros((1, 2)))


def test_numbers_in_any_reasonable_form_are_accepted() -> None:
    expected = theory.exact_moments(theory.DiscreteProblem(np.array([1.0]), np.array([[0.7, 0.3]])),
                                    np.array([[0.2, 1.5]]), None).variance
    for answer in (expected, np.float64(expected), np.array(expected), torch.tensor([expected]),
                   torch.tensor(expected, requires_grad=True), torch.tensor([[expected]])):
        assert checks.check_close(answer, expected, "Var"), type(answer)
    assert checks.check_flops(np.int64(476_400), hidden=300)
    reference = lambda z, v, T: (torch.softmax(z / T, 0) - torch.softmax(v / T, 0)) / T  # noqa: E731
    assert checks.check_kd_gradient(lambda z, v, T: reference(z, v, T).numpy())  # an array is fine
    assert checks.check_kd_gradient(lambda z, v, T: reference(z, v, T).requires_grad_(True))


@pytest.mark.parametrize("liar", [Liar(), LyingFloat(1e9)], ids=["Liar", "LyingFloat"])
def test_answers_that_lie_in_comparisons_never_pass(liar, digits, problem_and_losses) -> None:
    for name, check in value_checkers(digits, problem_and_losses).items():
        assert not check(liar), name
    assert not checks.check_kd_gradient(lambda z, v, T: liar)
    assert not checks.check_ece(lambda p, y, b: liar)


# --- a loss without a gradient cannot train a student --------------------------------------------

def test_kd_loss_without_a_gradient_is_rejected() -> None:
    def right(s, t, T):
        log_q, log_p = torch.log_softmax(s / T, 1), torch.log_softmax(t / T, 1)
        return T**2 * (log_p.exp() * (log_p - log_q)).sum(1).mean()

    assert checks.check_kd_loss(right)
    for wrong in (lambda s, t, T: right(s, t, T).item(), lambda s, t, T: right(s, t, T).detach(),
                  lambda s, t, T: right(s.detach(), t, T), lambda s, t, T: float(right(s, t, T).detach())):
        result = checks.check_kd_loss(wrong)
        assert not result and "gradient" in repr(result), repr(result)


# --- answers worked out by hand --------------------------------------------------------------------

def test_a_paired_interval_rounded_to_two_decimals_is_correct() -> None:
    assert checks.check_paired_interval(5.18, 5.42)
    assert checks.check_paired_interval(5.176, 5.424)
    swapped = checks.check_paired_interval(5.42, 5.18)
    assert not swapped and "swapped" in repr(swapped)
    normal = checks.check_paired_interval(5.30 - 0.0877, 5.30 + 0.0877)  # 1.96 instead of t
    assert not normal and "2.776" in repr(normal)
    assert not checks.check_paired_interval(5.0, 5.6)
    assert "centred" in repr(checks.check_paired_interval(5.2, 5.6))


def test_the_crossover_of_an_unbiased_teacher_is_infinite(problem_and_losses) -> None:
    problem, losses = problem_and_losses
    result = checks.check_crossover_n(100.0, problem, losses, problem.bayes)
    assert isinstance(result, checks.Verdict) and not result and "infinity" in repr(result)
    assert checks.check_crossover_n(math.inf, problem, losses, problem.bayes)


def test_gradient_factor_accepts_what_chapter_2_measures() -> None:
    """Chapter 2's exercise measures the factor with its own logits at scales 1, 3 and 10
    (73 to 262); every such measurement is accepted, and the 1/T mistake is not."""
    from kdlib.losses import kd_divergence

    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=g, dtype=torch.float64) * 3
    v = torch.randn(64, 10, generator=g, dtype=torch.float64) * 3
    for scale in (1.0, 3.0, 10.0):
        norms = {}
        for temperature in (1.0, 16.0):
            zz = (z * scale / 3).clone().requires_grad_(True)
            kd_divergence(zz, v * scale / 3, temperature).backward()
            norms[temperature] = zz.grad.norm().item()
        assert checks.check_gradient_factor(norms[1.0] / norms[16.0]), scale
        assert checks.check_gradient_factor(round(norms[1.0] / norms[16.0])), scale
    assert checks.check_gradient_factor(256)
    assert not checks.check_gradient_factor(16) and "1/T^2" in repr(checks.check_gradient_factor(16))
    assert not checks.check_gradient_factor(1 / 256) and "upside down" in repr(checks.check_gradient_factor(1 / 256))
    assert not checks.check_gradient_factor(16**3)


def test_no_checker_raises_on_the_placeholder(digits, problem_and_losses) -> None:
    """Every public checker, given ``...`` for its answer, says so (the starters' stored output)."""
    for name, check in value_checkers(digits, problem_and_losses).items():
        assert repr(check(...)) == f"Not yet: {checks.PLACEHOLDER_HINT}", name
    assert repr(checks.check_paired_interval(..., ...)) == f"Not yet: {checks.PLACEHOLDER_HINT}"
    assert repr(checks.check_schemes({"a": (..., ...), "b": (..., ...), "c": (..., ...)})) == \
        f"Not yet: {checks.PLACEHOLDER_HINT}"
    assert repr(checks.check_equality_example(..., ...)) == f"Not yet: {checks.PLACEHOLDER_HINT}"
