"""Checkers for the exercises: call one on your answer and it tells you at once if it is right.

Each checker returns a :class:`Verdict`: a notebook shows it as one line (``Correct: ...`` or
``Not yet: ...`` with a hint), and ``bool(verdict)`` is ``True`` or ``False``, so an instructor's
grading script can use the same checkers.

Every checker takes answers the same way (:func:`number`, :func:`tensor`, :func:`call`): it
computes what it expects *before* it runs the student's code, hands that code copies of its
inputs (never the course's own data), turns the answer into plain numbers (so an object that
lies in comparisons cannot pass), and answers a wrong type (``None`` from a forgotten
``return``, a string, an array of the wrong shape) with a hint instead of an exception: a
checker never raises (:func:`checker`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

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


PLACEHOLDER_HINT = "replace the ... in the cell with your answer, then run it again."
"""What a checker says while a starter cell still holds its placeholder ``...``."""
NOT_IMPLEMENTED_HINT = "the function still raises NotImplementedError: fill it in."
RETURNED_NONE_HINT = "the function returned None: did you forget the `return`?"


# ------------------------------------------------------------------------------------------------
# One way to take answers

class BadAnswer(Exception):
    """An answer a checker cannot use; the message is the hint the student sees."""


Check = TypeVar("Check", bound=Callable[..., Verdict])


def checker(check: Check) -> Check:
    """Make ``check`` answer every bad answer with a hint: a :class:`BadAnswer` becomes its
    hint, and any other error (an answer of a kind nobody foresaw) a hint that names it."""

    @functools.wraps(check)
    def safe(*args: object, **kwargs: object) -> Verdict:
        try:
            return check(*args, **kwargs)
        except BadAnswer as bad:
            return verdict(False, "", str(bad))
        except Exception as error:  # noqa: BLE001 - a checker reports, it never raises
            return verdict(False, "", f"the checker could not use your answer ({type(error).__name__}: "
                           f"{error}); check its type and shape against the exercise.")

    return safe  # type: ignore[return-value]


def describe(answer: object) -> str:
    """A short description of an answer, for hints."""
    if isinstance(answer, (Tensor, np.ndarray)):
        return f"a {type(answer).__name__} of shape {tuple(answer.shape)}"
    text = repr(answer)
    return f"{text[:40]}..." if len(text) > 40 else text


def number(answer: object, what: str = "your answer") -> float:
    """``answer`` as a plain Python float, or a :class:`BadAnswer` saying what is wrong with it.

    Accepts ints, floats (a subclass is read for its value, so it cannot lie in comparisons),
    NumPy scalars, and tensors or arrays holding one number (a tensor that requires grad too);
    refuses ``...``, ``None``, truth values, strings and anything else."""
    if answer is Ellipsis:
        raise BadAnswer(PLACEHOLDER_HINT)
    if answer is None:
        raise BadAnswer(f"{what} is None: did you forget to `return` it, or to assign it?")
    if isinstance(answer, (bool, np.bool_)):
        raise BadAnswer(f"{what} is {answer}, a truth value: give a number.")
    if isinstance(answer, (str, bytes)):
        raise BadAnswer(f"{what} is the text {answer!r}: give a number, without quotes.")
    if isinstance(answer, Tensor):
        if answer.numel() != 1:
            raise BadAnswer(f"{what} is a tensor of shape {tuple(answer.shape)}: give a single number.")
        if answer.is_complex():
            raise BadAnswer(f"{what} is a complex number: give a real one.")
        return float(answer.detach().cpu().reshape(()).to(torch.float64).numpy())
    if isinstance(answer, (np.ndarray, np.generic)):
        array = np.asarray(answer)
        if array.size != 1 or array.dtype.kind not in "iuf":
            raise BadAnswer(f"{what} is {describe(answer)} ({array.dtype}): give a single number.")
        return float(array.reshape(()).astype(np.float64))
    try:
        if isinstance(answer, float):
            return float.__float__(answer)  # the value itself, whatever a subclass says
        if isinstance(answer, int):
            return float(int.__int__(answer))
        value = float(answer)  # type: ignore[arg-type] - Fraction, Decimal, objects with __float__
    except OverflowError:
        raise BadAnswer(f"{what} is too large to be a float.") from None
    except (TypeError, ValueError):
        raise BadAnswer(f"{what} is {describe(answer)}, not a number: give a number.") from None
    return float.__float__(value)


def tensor(answer: object, shape: tuple[int, ...] | torch.Size | None = None,
           what: str = "the function's result") -> Tensor:
    """``answer`` as a new float64 tensor without gradient (a tensor, array or nested list of
    numbers), checked against ``shape``; or a :class:`BadAnswer` saying what is wrong."""
    if answer is Ellipsis:
        raise BadAnswer(PLACEHOLDER_HINT)
    if answer is None:
        raise BadAnswer(RETURNED_NONE_HINT if what == "the function's result"
                        else f"{what} is None: did you forget to `return` it?")
    if isinstance(answer, (str, bytes)):
        raise BadAnswer(f"{what} is the text {answer!r}, not numbers.")
    try:
        if isinstance(answer, Tensor):
            value = answer.detach().cpu().as_subclass(Tensor)
            if value.is_complex():
                raise BadAnswer(f"{what} holds complex numbers: give real ones.")
        else:
            value = torch.from_numpy(np.array(answer, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        raise BadAnswer(f"{what} is {describe(answer)}, not a tensor of numbers.") from None
    value = value.to(torch.float64).clone()
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise BadAnswer(f"expected a tensor of shape {tuple(shape)}, got one of shape {tuple(value.shape)}.")
    return value


def call(fn: object, *args: object, unfinished: str = NOT_IMPLEMENTED_HINT) -> object:
    """Run the student's ``fn`` on ``args`` (the checker passes copies): its result, or a
    :class:`BadAnswer` for a placeholder, something that is not a function, or an error."""
    if fn is Ellipsis:
        raise BadAnswer(PLACEHOLDER_HINT)
    if not callable(fn):
        raise BadAnswer(f"pass the function itself (its name, without parentheses), not {describe(fn)}.")
    try:
        return fn(*args)
    except NotImplementedError:
        raise BadAnswer(unfinished) from None
    except Exception as exc:  # noqa: BLE001 - a student's bug: report it rather than crash
        raise BadAnswer(f"calling it raised {type(exc).__name__}: {exc}") from None


def run_answer(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)``, with ``NotImplemented`` for a ``NotImplementedError`` and the exception
    itself for any other error (kept for scripts written before :func:`call`)."""
    try:
        return fn(*args)
    except NotImplementedError:
        return NotImplemented
    except Exception as exc:  # a student's bug: report it rather than crash the notebook
        return exc


def sample_logits(seed: int = 0, batch: int = 8, classes: int = 10) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, classes, generator=g, dtype=torch.float64) * 4,
            torch.randn(batch, classes, generator=g, dtype=torch.float64) * 4)


# ------------------------------------------------------------------------------------------------
# The checkers

@checker
def check_softened_softmax(fn: Callable[[Tensor, float], Tensor]) -> Verdict:
    """Exercise: ``fn(logits, T)`` returns the temperature-softened softmax, row by row."""
    logits, _ = sample_logits()
    for temperature in (0.5, 1.0, 3.5, 20.0):
        expected = torch.softmax(logits / temperature, dim=1)
        multiplied = torch.softmax(logits * temperature, dim=1)
        answer = call(fn, logits.clone(), temperature)
        value = tensor(answer)
        if value.shape != expected.shape:
            return verdict(False, "", f"expected a tensor of shape {tuple(expected.shape)}.")
        if not torch.allclose(value, expected, atol=1e-6):
            if torch.allclose(value, multiplied, atol=1e-6):
                return verdict(False, "", "you multiplied by T; divide the logits by T instead.")
            return verdict(False, "", f"wrong values at T = {temperature}: each row should be "
                           "softmax(logits / T) and sum to 1.")
    return verdict(True, "softmax(z / T) matches at T = 0.5, 1, 3.5 and 20.", "")


NO_GRADIENT_HINT = ("the value is right, but it carries no gradient (a Python number from .item() or "
                    "float(), or a detached tensor): the student cannot be trained on it. Return the "
                    "tensor itself.")


@checker
def check_kd_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> Verdict:
    """Exercise: ``fn(student_logits, teacher_logits, T)`` returns ``T**2 * KL(p_t || p_s)``
    (batch mean), as a tensor that carries the gradient with respect to the student's logits."""
    student, teacher = sample_logits(1)
    for temperature in (1.0, 4.0):
        leaf = student.clone().requires_grad_(True)
        reference = temperature**2 * kd_divergence(leaf, teacher, temperature)
        (expected_grad,) = torch.autograd.grad(reference, leaf)
        expected = reference.detach()
        unscaled = kd_divergence(student, teacher, temperature)
        reverse = temperature**2 * kd_divergence(teacher, student, temperature)
        mine = student.clone().requires_grad_(True)
        answer = call(fn, mine, teacher.clone(), temperature)
        value = tensor(answer)
        if value.numel() != 1:
            return verdict(False, "", "return a single number (a 0-d tensor): average over the batch.")
        value = value.reshape(())
        if not torch.allclose(value, expected, rtol=1e-6):
            hint = f"wrong value at T = {temperature}."
            if torch.allclose(value, unscaled, rtol=1e-6) and temperature != 1.0:
                hint = "you forgot the factor T**2."
            elif torch.allclose(value, reverse, rtol=1e-6):
                hint = "you computed KL(student || teacher); the teacher's distribution is the target."
            elif torch.allclose(value, expected / student.shape[1], rtol=1e-6):
                hint = "you divided by the number of classes too (reduction='mean'); use 'batchmean'."
            return verdict(False, "", hint)
        if not isinstance(answer, Tensor) or not answer.requires_grad:
            return verdict(False, "", NO_GRADIENT_HINT)
        (grad,) = torch.autograd.grad(answer.sum(), mine, allow_unused=True)
        if grad is None:
            return verdict(False, "", NO_GRADIENT_HINT)
        if not torch.allclose(grad.to(torch.float64), expected_grad, rtol=1e-5, atol=1e-9):
            return verdict(False, "", "the value is right but its gradient is not: compute the loss from the "
                           "student's logits with torch operations only, without detaching anything.")
    return verdict(True, "T^2 * KL(teacher || student), batch mean, matches at T = 1 and 4.", "")


@checker
def check_flops(answer: int, hidden: int, in_features: int = 784, classes: int = 10) -> Verdict:
    """Exercise: FLOPs per example of ``in_features-hidden-classes`` (multiply-add = 2 FLOPs)."""
    value = number(answer)
    expected = 2 * (in_features * hidden + hidden * classes)
    if value == expected:
        return verdict(True, f"{expected:,} FLOPs per example.", "")
    if value == expected // 2:
        return verdict(False, "", "that counts multiply-adds; a multiply-add is 2 FLOPs.")
    return verdict(False, "", "count 2 FLOPs for each weight of each linear layer (biases are free).")


@checker
def check_close(answer: float, expected: float, name: str, rtol: float = 1e-3) -> Verdict:
    """Exercise with a numerical answer: ``answer`` within relative ``rtol`` of ``expected``."""
    value = number(answer)
    target = number(expected, "the expected value")
    ok = math.isfinite(value) and abs(value - target) <= rtol * abs(target)
    return verdict(ok, f"{name} = {target:.6g}.", f"{name} should be about {target:.3g}, "
                   f"not {value:.6g}: re-read the definition and check each expectation.")


@checker
def check_crossover_n(answer: float, problem, losses: np.ndarray, teacher: np.ndarray) -> Verdict:
    """Exercise: the sample size below which a fixed teacher's E[Delta^2] beats one-hot labels'."""
    from kdlib import theory

    value = number(answer)
    empirical = theory.exact_moments(problem, losses, None).variance
    terms = theory.lemma2_terms(problem, losses, teacher, n=1)
    gap = empirical - terms.variance_term
    if terms.squared_bias <= 1e-12 * max(abs(gap), 1e-300):  # an unbiased teacher: no crossover
        if gap > 0:
            return verdict(math.isinf(value) and value > 0,
                           "N* is infinite: an unbiased teacher with the smaller variance wins at every N.",
                           "this teacher has no bias, so its E[Delta^2] is below the labels' at every N: "
                           "the crossover is at infinity (answer float('inf')).")
        return verdict(value == 0, "N* = 0: an unbiased teacher without a smaller variance never wins.",
                       "this teacher has no bias and no smaller variance, so it never wins: answer 0.")
    return check_close(value, gap / terms.squared_bias, "N*")


@checker
def check_ece(fn: Callable[[Tensor, Tensor, int], float]) -> Verdict:
    """Exercise: ``fn(probs, labels, bins)`` returns the expected calibration error."""
    from kdlib.calibration import expected_calibration_error

    g = torch.Generator().manual_seed(7)
    probs = torch.softmax(torch.randn(400, 10, generator=g) * 3, dim=1)
    labels = torch.randint(0, 10, (400,), generator=g)
    labels[:200] = probs[:200].argmax(dim=1)  # some right, some wrong
    expected = expected_calibration_error(probs, labels, 15)
    confidence, predicted = probs.max(dim=1)
    unweighted = abs((predicted == labels).float().mean() - confidence.mean()).item()
    answer = call(fn, probs.clone(), labels.clone(), 15)
    if answer is None:
        raise BadAnswer(RETURNED_NONE_HINT)
    value = number(answer, "the function's result")
    if abs(value - expected) <= 1e-5:
        return verdict(True, f"ECE = {expected:.4f} on the test predictions.", "")
    if abs(value - unweighted) <= 1e-5:
        return verdict(False, "", "you compared the overall accuracy with the overall confidence; "
                       "compare them bin by bin and weight each bin by its share.")
    return verdict(False, "", f"expected {expected:.4f}, got {value:.4f}: bin by confidence (the largest "
                   "probability), weight each bin's |accuracy - confidence| by its share of the predictions.")


PAIRED_EXERCISE = ([95.1, 95.4, 94.9, 95.3, 95.0], [89.8, 90.2, 89.5, 90.1, 89.6])
PAIRED_TOLERANCE = 0.006
"""Absolute tolerance of :func:`check_paired_interval`: bounds worked out by hand and rounded to
two decimals (error up to 0.005, with t rounded to 2.78) pass."""


@checker
def check_paired_interval(low: float, high: float) -> Verdict:
    """Exercise: the 95% paired-t confidence interval of :data:`PAIRED_EXERCISE`'s gain."""
    from scipy import stats

    from kdlib.stats import paired_gap

    if low is Ellipsis or high is Ellipsis:
        raise BadAnswer(PLACEHOLDER_HINT)
    lo, hi = number(low, "low"), number(high, "high")
    gap = paired_gap(*PAIRED_EXERCISE)
    tol = PAIRED_TOLERANCE
    if abs(lo - gap.low) <= tol and abs(hi - gap.high) <= tol:
        return verdict(True, f"gain {gap.mean:.2f}, 95% CI [{gap.low:.3f}, {gap.high:.3f}].", "")
    if abs(hi - gap.low) <= tol and abs(lo - gap.high) <= tol:
        return verdict(False, "", "the bounds are swapped: pass the lower one first, "
                       "check_paired_interval(low, high).")
    if lo > hi:
        return verdict(False, "", "low is above high: pass the lower bound first.")
    if abs((lo + hi) / 2 - gap.mean) > tol:
        return verdict(False, "", f"the interval should be centred on the mean paired difference, {gap.mean:.2f}.")
    half = (hi - lo) / 2
    diffs = np.subtract(*PAIRED_EXERCISE)
    if abs(half - stats.norm.ppf(0.975) * diffs.std(ddof=1) / math.sqrt(len(diffs))) <= tol:
        return verdict(False, "", "that half-width uses the normal quantile 1.96; with five seeds use the "
                       "t quantile t(0.975, 4) = 2.776.")
    return verdict(False, "", "use the standard deviation of the differences (n - 1 in the denominator), "
                   "divided by sqrt(5), times the t quantile t(0.975, 4) = 2.776.")


FAKE_QUANT_EXERCISE = {"weight": 0.52, "bits": 4, "scale": 0.05}
"""Chapter 8: the weight, bit width and scale of the fake-quantization exercise."""


@checker
def check_fake_quantized(answer: float) -> Verdict:
    """Exercise: the 4-bit fake-quantized value of the weight 0.52 with scale 0.05 (symmetric,
    zero point 0)."""
    from kdlib.quantize import fake_quantize

    value = number(answer)
    w, bits, scale = FAKE_QUANT_EXERCISE.values()
    expected = fake_quantize(torch.tensor(w), bits, scale).item()
    if abs(value - expected) < 1e-6:
        return verdict(True, f"{expected:g}: round(0.52 / 0.05) = 10 lies above the largest level, 7, "
                       "so the value is clipped to 7 * 0.05.", "")
    if abs(value - round(w / scale) * scale) < 1e-6:
        return verdict(False, "", "rounded correctly, but a 4-bit signed grid has levels -8 to 7 only: clamp first.")
    return verdict(False, "", "compute q = clamp(round(w / scale), -8, 7), then q * scale.")


def int8_mlp_size_bytes(hidden: int = 300) -> int:
    """Measured bytes of the int8 model of a ``784-hidden-10`` MLP (:func:`kdlib.quantize.to_int8`)."""
    from kdlib.models import mlp
    from kdlib.quantize import freeze, model_size_bytes, prepare_qat, to_int8

    example = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    qat = prepare_qat(mlp([hidden]), 8, example)
    qat(example)  # the activation quantizers see one batch
    return model_size_bytes(to_int8(freeze(qat)))


@checker
def check_int8_size(answer: int, hidden: int = 300) -> Verdict:
    """Exercise: predict the size in bytes of the int8 ``784-hidden-10`` model (within 10% of
    the measured size, which adds quantization parameters and file overhead)."""
    value = number(answer)
    measured = int8_mlp_size_bytes(hidden)
    weights = 784 * hidden + hidden * 10
    if abs(value - measured) <= 0.1 * measured:
        return verdict(True, f"the file has {measured:,} bytes: {weights:,} one-byte weights, float biases, "
                       "a scale and zero point per output channel, and the file format's overhead.", "")
    if abs(value - 4 * weights) <= 0.1 * 4 * weights:
        return verdict(False, "", "that is the float32 size: int8 stores each weight in one byte, not four.")
    return verdict(False, "", f"count the weights ({weights:,} of them) at one byte each, then add a little.")


# ------------------------------------------------------------------------------------------------
# Checkers added with the student edition: every exercise with a computable answer has one.

def unanswered(*answers: object) -> bool:
    """True while a starter cell's placeholder (``...``) is still in place."""
    return any(a is Ellipsis for a in answers)


@checker
def check_mnist_test_mean(answer: float, dataset) -> Verdict:
    """Chapter 0: the mean pixel value of the MNIST *test* images, scaled to [0, 1]."""
    value = number(answer)
    expected = (dataset.test_images.float() / 255).mean().item()
    if abs(value - expected) < 1e-4:
        return verdict(True, f"{expected:.4f}, close to the training set's {dataset.mean[0]}.", "")
    if abs(value - 255 * expected) < 1e-2:
        return verdict(False, "", "that is on the 0-255 scale: divide the uint8 pixels by 255 first.")
    return verdict(False, "", "convert the test images to float, divide by 255, and average every pixel.")


@checker
def check_normalization(fn: Callable[[Tensor], Tensor], dataset) -> Verdict:
    """Chapter 0: ``fn(uint8 images)`` standardises them with the dataset's mean and std. The
    function gets a copy of the images, so a function that changes its input in place cannot
    change the dataset."""
    from kdlib.data import normalize

    images = dataset.train_images[:512].clone()
    reference = normalize(images, dataset.mean, dataset.std)
    expected = reference.to(torch.float64)
    unscaled = ((images.float() - dataset.mean[0]) / dataset.std[0]).to(torch.float64)
    unfinished = "the function does not return a tensor yet: fill it in."
    answer = call(fn, images.clone(), unfinished=unfinished)
    if answer is Ellipsis or answer is None:
        return verdict(False, "", unfinished)
    wrong = "return (images / 255 - mean) / std as floats, with the shape of the input."
    try:
        value = tensor(answer, expected.shape)
    except BadAnswer:
        return verdict(False, "", wrong)
    if torch.allclose(value, expected, atol=1e-4):
        return verdict(True, f"normalised: mean {reference.mean():.3f}, std {reference.std():.3f}.", "")
    if torch.allclose(value, unscaled, atol=1e-4):
        return verdict(False, "", "the constants are for pixels in [0, 1]: divide by 255 before standardising.")
    return verdict(False, "", wrong)


SCHEMES_EXERCISE = {"a": ("response", "offline"), "b": ("response", "online"), "c": ("feature", "offline")}


@checker
def check_schemes(answers: dict) -> Verdict:
    """Chapter 1: kind of knowledge and scheme of methods (a), (b), (c), e.g.
    ``{"a": ("response", "offline"), ...}``."""
    if answers is Ellipsis:
        raise BadAnswer(PLACEHOLDER_HINT)
    if not isinstance(answers, Mapping):
        raise BadAnswer('give a dict like {"a": ("response", "offline"), "b": ..., "c": ...}, '
                        f"not {describe(answers)}.")
    given = {}
    for key in SCHEMES_EXERCISE:
        pair = answers.get(key, ())
        if pair is Ellipsis:
            raise BadAnswer(PLACEHOLDER_HINT)
        if isinstance(pair, str) or not isinstance(pair, (tuple, list)):
            raise BadAnswer(f'give ({key}) as a pair of words, e.g. ("response", "offline"), not {describe(pair)}.')
        if unanswered(*pair):
            raise BadAnswer(PLACEHOLDER_HINT)
        given[key] = tuple(str(v).strip().lower() for v in pair)
    wrong = [key for key, expected in SCHEMES_EXERCISE.items() if given[key] != expected]
    if not wrong:
        return verdict(True, "(a) response/offline, (b) response/online, (c) feature/offline.", "")
    if wrong == ["b"]:
        return verdict(False, "", "in (b) neither network is pre-trained and frozen: when do they learn?")
    return verdict(False, "", f"look again at ({', '.join(wrong)}): what does the student match, and is the "
                   "teacher trained before the student?")


@checker
def check_kd_gradient(fn: Callable[[Tensor, Tensor, float], Tensor]) -> Verdict:
    """Chapter 2: ``fn(z, v, T)`` returns d KL(p^T || q^T) / d z for one example (a vector)."""
    z, v = (row[0] for row in sample_logits(3, batch=1))
    zz = z.clone().requires_grad_(True)
    kd_divergence(zz[None], v[None], 2.0).backward()
    expected = zz.grad.detach()
    unfinished = "the function does not return the gradient yet: fill it in."
    answer = call(fn, z.clone(), v.clone(), 2.0, unfinished=unfinished)
    if answer is Ellipsis or answer is None:
        return verdict(False, "", unfinished)
    value = tensor(answer, expected.shape)
    if torch.allclose(value, expected, atol=1e-9):
        return verdict(True, "(q^T - p^T) / T matches autograd.", "")
    if torch.allclose(value, 2.0 * expected, atol=1e-9):
        return verdict(False, "", "you forgot the 1 / T from the chain rule through z / T.")
    return verdict(False, "", "the gradient is (softmax(z / T) - softmax(v / T)) / T.")


GRADIENT_FACTOR_RANGE = (60.0, 300.0)
"""Answers :func:`check_gradient_factor` accepts: chapter 2 measures 73 to 262 for logits of
scale 10 to 1, and the high-temperature limit gives 16^2 = 256."""


@checker
def check_gradient_factor(answer: float) -> Verdict:
    """Chapter 2: by what factor the KD gradient (without T^2) shrinks from T = 1 to T = 16."""
    value = number(answer)
    low, high = GRADIENT_FACTOR_RANGE
    if low <= value <= high:
        return verdict(True, f"about {value:g}: the high-temperature limit gives 16^2 = 256 (measured: 73 to 262, "
                       "depending on the logits).", "")
    if 10 <= value <= 20:
        return verdict(False, "", "the softened distributions differ by O(1/T) and the chain rule adds another "
                       "1/T: the gradient falls like 1/T^2.")
    if 0 < value < 1:
        return verdict(False, "", "the ratio is upside down: divide the gradient at T = 1 by the one at T = 16.")
    return verdict(False, "", "in the high-temperature limit the KD gradient scales like 1/T^2.")


@checker
def check_equality_example(problem, losses: np.ndarray) -> Verdict:
    """Chapter 3: a problem with some non-one-hot p*(x) and a predictor whose two variances are equal."""
    from kdlib import theory

    if unanswered(problem, losses):
        raise BadAnswer(PLACEHOLDER_HINT)
    if not isinstance(problem, theory.DiscreteProblem):
        raise BadAnswer(f"my_problem should be a theory.DiscreteProblem(marginal, bayes), not {describe(problem)}.")
    table = tensor(losses, problem.bayes.shape, "my_losses").numpy()
    if (problem.bayes.max(axis=1) > 1 - 1e-12).all():
        return verdict(False, "", "every p*(x) here is one-hot: make at least one of them spread over two labels.")
    emp = theory.exact_moments(problem, table, None).variance
    bayes = theory.exact_moments(problem, table, problem.bayes).variance
    if abs(emp - bayes) <= 1e-10 * max(1.0, emp):
        return verdict(True, f"both variances are {emp:.6g}.", "")
    return verdict(False, "", f"the variances differ ({emp:.4g} vs {bayes:.4g}): the loss must take the same "
                   "value for every label that p*(x) can produce, at every x.")


@checker
def check_data_worth(answer: float, problem, losses: np.ndarray, n: int = 100) -> Verdict:
    """Chapter 3: labelled examples the empirical risk needs to match the Bayes-distilled
    variance at ``n``."""
    from kdlib import theory

    value = number(answer)
    emp = theory.exact_moments(problem, losses, None).variance
    bayes = theory.exact_moments(problem, losses, problem.bayes).variance
    expected = n * emp / bayes
    if abs(value - expected) <= 0.01 * expected:
        return verdict(True, f"N' = {n} x {emp / bayes:.3f} = {expected:.0f}.", "")
    if abs(value - n * bayes / emp) <= 0.01 * n * bayes / emp:
        return verdict(False, "", "the ratio is upside down: the noisier estimate needs more data.")
    return verdict(False, "", "both variances are (per-example variance) / N: set them equal and solve for N'.")


@checker
def check_best_tau(answer: float, problem, losses: np.ndarray, n: int = 30,
                   taus: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)) -> Verdict:
    """Chapter 4: the tempering tau with the smallest E[Delta^2] at ``n``."""
    from kdlib import theory

    value = number(answer)
    mse = {t: theory.lemma2_terms(problem, losses, theory.tempered_teacher(problem.bayes, t), n=n).mse for t in taus}
    best = min(mse, key=mse.get)
    if value == best:
        return verdict(True, f"tau = {best:g} ({mse[best]:.5f}; tau = 1 gives {mse[1.0]:.5f}).", "")
    if value == 1.0:
        return verdict(False, "", "tau = 1 has no bias, but compare variance term + squared bias, not bias alone.")
    return verdict(False, "", "compute variance_term + squared_bias for each tau and take the smallest.")


@checker
def check_stride_factor(answer: float) -> Verdict:
    """Chapter 6: the factor by which doubling the first-stage stride (1 -> 2) cuts the FLOPs of
    the [1, 1, 1, 1] student at width 1."""
    from kdlib.bench import count_flops
    from kdlib.models import cifar_resnet

    value = number(answer)
    x = torch.zeros(1, 3, 32, 32)
    expected = count_flops(cifar_resnet((1, 1, 1, 1), stride=1), x) / count_flops(cifar_resnet((1, 1, 1, 1), stride=2), x)
    if abs(value - expected) <= 0.01 * expected:
        return verdict(True, f"{expected:.2f}: less than 4, mostly because the first block's 1x1 convolution runs "
                       "before its strided 3x3 one, at full resolution.", "")
    if value == 4:
        return verdict(False, "", "4 is the factor for the layers after the stride alone; count the whole network.")
    return verdict(False, "", "divide count_flops at stride 1 by count_flops at stride 2.")


@checker
def check_errors_removed(answer: float) -> Verdict:
    """Chapter 9: the percentage of the lone 800-800 student's test errors that distillation
    removes, from the mean error counts of the published anchors (within 0.5 points)."""
    from kdlib.experiments import anchors

    frame = anchors.student_frame(anchors.load_published())
    alone = anchors.by_seed(frame, "hinton", "nokd", "errors").mean()
    distilled = anchors.by_seed(frame, "hinton", "kd", "errors").mean()
    expected = 100 * (alone - distilled) / alone
    value = number(answer)
    if abs(value - expected) <= 0.5:
        return verdict(True, f"{expected:.1f}% = 100 x ({alone:.1f} - {distilled:.1f}) / {alone:.1f} (Hinton et al.: "
                       "100 x (146 - 74) / 146 = 49.3%).", "")
    if abs(value - expected / 100) <= 0.005:
        return verdict(False, "", "that is a fraction: give it in percent.")
    if abs(value - 100 * (alone - distilled) / distilled) <= 0.5:
        return verdict(False, "", "divide by the lone student's errors (what there was to remove), not the "
                       "distilled student's.")
    if abs(value - 100 * (146 - 74) / 146) <= 0.5:
        return verdict(False, "", "that is the paper's figure: use the mean error counts of the table above.")
    return verdict(False, "", "100 x (errors alone - errors distilled) / errors alone, with the mean counts.")


def bias_shift_problem(seed: int = 0) -> tuple[Tensor, Tensor, tuple[float, ...]]:
    """Validation logits of a student that never saw class 3 (its 3s score low on class 3),
    their labels, and the shifts to try: the chapter 9 exercise's data."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(200) % 10
    logits = torch.randn(200, 10, generator=g)
    logits[torch.arange(200), labels] += 4.0
    logits[:, 3] -= 3.0 + torch.rand(200, generator=g) * 2.0  # the unseen class is under-scored
    return logits, labels, tuple(float(s) for s in torch.arange(0.0, 8.01, 0.5))


@checker
def check_bias_shift(fn: Callable[[Tensor, Tensor, tuple[float, ...]], float]) -> Verdict:
    """Chapter 9: ``fn(logits, labels, shifts)`` returns the shift (one of ``shifts``) that,
    added to the logit of class 3, makes the fewest errors on these validation images (the
    smallest such shift on ties)."""
    from kdlib.experiments.anchors import errors, shifted

    logits, labels, shifts = bias_shift_problem()
    counts = [errors(shifted(logits, (3,), s), labels) for s in shifts]
    expected = shifts[int(np.argmin(counts))]
    value = number(call(fn, logits.clone(), labels.clone(), shifts), "the function's result")
    if value == expected:
        return verdict(True, f"+{expected:g} ({min(counts)} errors of {len(labels)}, {counts[0]} without a shift).", "")
    threes = labels == 3
    recognised = [errors(shifted(logits[threes], (3,), s), labels[threes]) for s in shifts]
    if value == shifts[int(np.argmin(recognised))] or value == max(shifts):
        return verdict(False, "", "you maximised the 3s recognised; count the errors on *all* the images, since "
                       "a larger shift also turns other digits into 3s.")
    if value in shifts:
        return verdict(False, "", f"+{value:g} makes {counts[shifts.index(value)]} errors; try every shift and keep "
                       "the one with the fewest (the smallest on ties).")
    return verdict(False, "", "return one of the shifts you were given.")


@checker
def check_tckd(fn: Callable[[Tensor, Tensor, Tensor, float], Tensor]) -> Verdict:
    """Chapter 10: ``fn(student_logits, teacher_logits, labels, T)`` returns DKD's target-class
    term of each example, ``KL(b_teacher || b_student)`` with ``b = (p_target, 1 - p_target)``
    at temperature ``T``: a tensor of shape ``(N,)``."""
    from kdlib.methods.dkd import dkd_parts

    student, teacher = sample_logits(3, batch=12)
    labels = torch.arange(12) % 10
    for temperature in (1.0, 4.0):
        expected, _, _ = dkd_parts(student, teacher, labels, temperature)
        reverse, _, _ = dkd_parts(teacher, student, labels, temperature)
        unsoftened, _, _ = dkd_parts(student, teacher, labels, 1.0)
        value = tensor(call(fn, student.clone(), teacher.clone(), labels.clone(), temperature))
        if value.numel() == 1 and torch.allclose(value.reshape(()), expected.mean(), rtol=1e-5):
            return verdict(False, "", "that is the batch mean: return one value per example, shape (N,).")
        if value.shape != expected.shape:
            return verdict(False, "", f"expected a tensor of shape {tuple(expected.shape)}, one value per example.")
        if torch.allclose(value, expected, rtol=1e-5, atol=1e-9):
            continue
        if torch.allclose(value, reverse, rtol=1e-5, atol=1e-9):
            return verdict(False, "", "you computed KL(student || teacher); the teacher's binary distribution is "
                           "the target.")
        if torch.allclose(value, temperature**2 * expected, rtol=1e-5, atol=1e-9):
            return verdict(False, "", "leave out the factor T**2: DKD multiplies the sum of both parts by it.")
        if temperature != 1.0 and torch.allclose(value, unsoftened, rtol=1e-5, atol=1e-9):
            return verdict(False, "", "divide both networks' logits by T before the softmax.")
        return verdict(False, "", f"wrong values at T = {temperature}: b = (p_target, 1 - p_target) from each "
                       "network's softmax(z / T), then sum b_t * log(b_t / b_s) over the two entries.")
    return verdict(True, "the target-class part of KD, per example, matches at T = 1 and 4.", "")


def expected_maximum(sigma: float, k: int) -> float:
    """``E[max of k independent N(0, sigma**2) draws]``, by numerical integration."""
    from scipy import integrate, stats

    if k == 1:
        return 0.0
    density = lambda x: x * k * stats.norm.pdf(x) * stats.norm.cdf(x) ** (k - 1)  # noqa: E731
    value, _ = integrate.quad(density, -12, 12, limit=200)
    return sigma * value


INFLATION_CASES = ((0.2, 5), (0.5, 10), (1.0, 2), (0.3, 1), (0.1, 30))


@checker
def check_inflation(fn: Callable[[float, int], float]) -> Verdict:
    """Chapter 10: ``fn(sigma, k)`` returns the expected best of ``k`` epochs' accuracies above
    their common mean, when they scatter independently with standard deviation ``sigma``:
    ``E[max of k N(0, sigma**2)]``, within 2% of it plus 1% of ``sigma``: a Monte-Carlo answer
    with 100,000 sets of draws or more passes (at ``k = 1`` the expectation is 0, and the
    simulation's standard error, ``sigma / sqrt(draws)``, is all the tolerance there is)."""
    for sigma, k in INFLATION_CASES:
        expected = expected_maximum(sigma, k)
        value = number(call(fn, sigma, k), "the function's result")
        if abs(value - expected) <= 0.02 * abs(expected) + 0.01 * sigma:
            continue
        if k > 1 and abs(value - sigma * math.sqrt(2 * math.log(k))) <= 1e-6 + 1e-3 * sigma:
            return verdict(False, "", "sigma * sqrt(2 log k) is an upper bound that is reached only as k grows "
                           f"without end; compute the expectation itself (k = {k}: {value:.3f} is too large).")
        if abs(value - sigma) <= 1e-9 + 1e-3 * sigma:
            return verdict(False, "", "the best of k draws does not sit one standard deviation up for every k: "
                           "it depends on k.")
        return verdict(False, "", f"wrong value for sigma = {sigma:g}, k = {k}: the mean of the largest of k "
                       "draws from N(0, sigma**2) (simulate many sets of k draws, or integrate).")
    return verdict(True, "E[max of k N(0, sigma^2)] matches for every sigma and k tried (e.g. sigma 0.5, "
                   f"k 10: {expected_maximum(0.5, 10):.3f}).", "")
