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


PLACEHOLDER_HINT = "replace the ... in the cell with your answer, then run it again."
"""What a checker says while a starter cell still holds its placeholder ``...``."""


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
    if answer is Ellipsis:
        return verdict(False, "", PLACEHOLDER_HINT)
    expected = 2 * (in_features * hidden + hidden * classes)
    if answer == expected:
        return verdict(True, f"{expected:,} FLOPs per example.", "")
    if answer == expected // 2:
        return verdict(False, "", "that counts multiply-adds; a multiply-add is 2 FLOPs.")
    return verdict(False, "", "count 2 FLOPs for each weight of each linear layer (biases are free).")


def check_close(answer: float, expected: float, name: str, rtol: float = 1e-3) -> Verdict:
    """Exercise with a numerical answer: ``answer`` within relative ``rtol`` of ``expected``."""
    if answer is Ellipsis:
        return verdict(False, "", PLACEHOLDER_HINT)
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

    if low is Ellipsis or high is Ellipsis:
        return verdict(False, "", PLACEHOLDER_HINT)
    gap = paired_gap(*PAIRED_EXERCISE)
    if abs(low - gap.low) <= 1e-3 and abs(high - gap.high) <= 1e-3:
        return verdict(True, f"gain {gap.mean:.2f}, 95% CI [{gap.low:.3f}, {gap.high:.3f}].", "")
    if abs((low + high) / 2 - gap.mean) > 1e-3:
        return verdict(False, "", f"the interval should be centred on the mean paired difference, {gap.mean:.2f}.")
    return verdict(False, "", "use the standard deviation of the differences (n - 1 in the denominator), "
                   "divided by sqrt(5), times the t quantile t(0.975, 4) = 2.776.")


FAKE_QUANT_EXERCISE = {"weight": 0.52, "bits": 4, "scale": 0.05}
"""Chapter 8: the weight, bit width and scale of the fake-quantization exercise."""


def check_fake_quantized(answer: float) -> Verdict:
    """Exercise: the 4-bit fake-quantized value of the weight 0.52 with scale 0.05 (symmetric,
    zero point 0)."""
    from kdlib.quantize import fake_quantize

    if answer is Ellipsis:
        return verdict(False, "", PLACEHOLDER_HINT)
    w, bits, scale = FAKE_QUANT_EXERCISE.values()
    expected = fake_quantize(torch.tensor(w), bits, scale).item()
    if abs(answer - expected) < 1e-6:
        return verdict(True, f"{expected:g}: round(0.52 / 0.05) = 10 lies above the largest level, 7, "
                       "so the value is clipped to 7 * 0.05.", "")
    if abs(answer - round(w / scale) * scale) < 1e-6:
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


def check_int8_size(answer: int, hidden: int = 300) -> Verdict:
    """Exercise: predict the size in bytes of the int8 ``784-hidden-10`` model (within 10% of
    the measured size, which adds quantization parameters and file overhead)."""
    if answer is Ellipsis:
        return verdict(False, "", PLACEHOLDER_HINT)
    measured = int8_mlp_size_bytes(hidden)
    weights = 784 * hidden + hidden * 10
    if abs(answer - measured) <= 0.1 * measured:
        return verdict(True, f"the file has {measured:,} bytes: {weights:,} one-byte weights, float biases, "
                       "a scale and zero point per output channel, and the file format's overhead.", "")
    if abs(answer - 4 * weights) <= 0.1 * 4 * weights:
        return verdict(False, "", "that is the float32 size: int8 stores each weight in one byte, not four.")
    return verdict(False, "", f"count the weights ({weights:,} of them) at one byte each, then add a little.")


# ------------------------------------------------------------------------------------------------
# Checkers added with the student edition: every exercise with a computable answer has one.

def unanswered(*answers: object) -> bool:
    """True while a starter cell's placeholder (``...``) is still in place."""
    return any(a is Ellipsis for a in answers)


def check_mnist_test_mean(answer: float, dataset) -> Verdict:
    """Chapter 0: the mean pixel value of the MNIST *test* images, scaled to [0, 1]."""
    if unanswered(answer):
        return verdict(False, "", PLACEHOLDER_HINT)
    expected = (dataset.test_images.float() / 255).mean().item()
    if abs(answer - expected) < 1e-4:
        return verdict(True, f"{expected:.4f}, close to the training set's {dataset.mean[0]}.", "")
    if abs(answer - 255 * expected) < 1e-2:
        return verdict(False, "", "that is on the 0-255 scale: divide the uint8 pixels by 255 first.")
    return verdict(False, "", "convert the test images to float, divide by 255, and average every pixel.")


def check_normalization(fn: Callable[[Tensor], Tensor], dataset) -> Verdict:
    """Chapter 0: ``fn(uint8 images)`` standardises them with the dataset's mean and std."""
    from kdlib.data import normalize

    images = dataset.train_images[:512]
    answer = run_answer(fn, images)
    if answer is NotImplemented or answer is Ellipsis or answer is None:
        return verdict(False, "", "the function does not return a tensor yet: fill it in.")
    if isinstance(answer, Exception):
        return verdict(False, "", f"calling it raised {type(answer).__name__}: {answer}")
    expected = normalize(images, dataset.mean, dataset.std)
    if isinstance(answer, Tensor) and answer.shape == expected.shape and torch.allclose(answer.float(), expected,
                                                                                        atol=1e-4):
        return verdict(True, f"normalised: mean {expected.mean():.3f}, std {expected.std():.3f}.", "")
    if isinstance(answer, Tensor) and answer.shape == expected.shape:
        unscaled = (images.float() - dataset.mean[0]) / dataset.std[0]
        if torch.allclose(answer.float(), unscaled, atol=1e-4):
            return verdict(False, "", "the constants are for pixels in [0, 1]: divide by 255 before standardising.")
    return verdict(False, "", "return (images / 255 - mean) / std as floats, with the shape of the input.")


SCHEMES_EXERCISE = {"a": ("response", "offline"), "b": ("response", "online"), "c": ("feature", "offline")}


def check_schemes(answers: dict) -> Verdict:
    """Chapter 1: kind of knowledge and scheme of methods (a), (b), (c), e.g.
    ``{"a": ("response", "offline"), ...}``."""
    if not isinstance(answers, dict) or unanswered(*(v for pair in answers.values() for v in pair)):
        return verdict(False, "", PLACEHOLDER_HINT)
    wrong = [key for key, expected in SCHEMES_EXERCISE.items()
             if tuple(str(v).strip().lower() for v in answers.get(key, ())) != expected]
    if not wrong:
        return verdict(True, "(a) response/offline, (b) response/online, (c) feature/offline.", "")
    if wrong == ["b"]:
        return verdict(False, "", "in (b) neither network is pre-trained and frozen: when do they learn?")
    return verdict(False, "", f"look again at ({', '.join(wrong)}): what does the student match, and is the "
                   "teacher trained before the student?")


def check_kd_gradient(fn: Callable[[Tensor, Tensor, float], Tensor]) -> Verdict:
    """Chapter 2: ``fn(z, v, T)`` returns d KL(p^T || q^T) / d z for one example (a vector)."""
    z, v = (row[0] for row in sample_logits(3, batch=1))
    answer = run_answer(fn, z, v, 2.0)
    if answer is NotImplemented or answer is Ellipsis or answer is None:
        return verdict(False, "", "the function does not return the gradient yet: fill it in.")
    if isinstance(answer, Exception):
        return verdict(False, "", f"calling it raised {type(answer).__name__}: {answer}")
    zz = z.clone().requires_grad_(True)
    kd_divergence(zz[None], v[None], 2.0).backward()
    value = torch.as_tensor(answer, dtype=torch.float64)
    if value.shape == zz.grad.shape and torch.allclose(value, zz.grad, atol=1e-9):
        return verdict(True, "(q^T - p^T) / T matches autograd.", "")
    if value.shape == zz.grad.shape and torch.allclose(value, 2.0 * zz.grad, atol=1e-9):
        return verdict(False, "", "you forgot the 1 / T from the chain rule through z / T.")
    return verdict(False, "", "the gradient is (softmax(z / T) - softmax(v / T)) / T.")


def check_gradient_factor(answer: float) -> Verdict:
    """Chapter 2: by what factor the KD gradient (without T^2) shrinks from T = 1 to T = 16."""
    if unanswered(answer):
        return verdict(False, "", PLACEHOLDER_HINT)
    if 100 <= answer <= 300:
        return verdict(True, f"about {answer:g}: the high-temperature limit gives 16^2 = 256 (measured: 73 to 262, "
                       "depending on the logits).", "")
    if 10 <= answer <= 20:
        return verdict(False, "", "the softened distributions differ by O(1/T) and the chain rule adds another "
                       "1/T: the gradient falls like 1/T^2.")
    return verdict(False, "", "in the high-temperature limit the KD gradient scales like 1/T^2.")


def check_equality_example(problem, losses: np.ndarray) -> Verdict:
    """Chapter 3: a problem with some non-one-hot p*(x) and a predictor whose two variances are equal."""
    from kdlib import theory

    if unanswered(problem, losses):
        return verdict(False, "", PLACEHOLDER_HINT)
    if (problem.bayes.max(axis=1) > 1 - 1e-12).all():
        return verdict(False, "", "every p*(x) here is one-hot: make at least one of them spread over two labels.")
    emp = theory.exact_moments(problem, np.asarray(losses, dtype=float), None).variance
    bayes = theory.exact_moments(problem, np.asarray(losses, dtype=float), problem.bayes).variance
    if abs(emp - bayes) <= 1e-10 * max(1.0, emp):
        return verdict(True, f"both variances are {emp:.6g}.", "")
    return verdict(False, "", f"the variances differ ({emp:.4g} vs {bayes:.4g}): the loss must take the same "
                   "value for every label that p*(x) can produce, at every x.")


def check_data_worth(answer: float, problem, losses: np.ndarray, n: int = 100) -> Verdict:
    """Chapter 3: labelled examples the empirical risk needs to match the Bayes-distilled
    variance at ``n``."""
    from kdlib import theory

    if unanswered(answer):
        return verdict(False, "", PLACEHOLDER_HINT)
    emp = theory.exact_moments(problem, losses, None).variance
    bayes = theory.exact_moments(problem, losses, problem.bayes).variance
    expected = n * emp / bayes
    if abs(answer - expected) <= 0.01 * expected:
        return verdict(True, f"N' = {n} x {emp / bayes:.3f} = {expected:.0f}.", "")
    if abs(answer - n * bayes / emp) <= 0.01 * n * bayes / emp:
        return verdict(False, "", "the ratio is upside down: the noisier estimate needs more data.")
    return verdict(False, "", "both variances are (per-example variance) / N: set them equal and solve for N'.")


def check_best_tau(answer: float, problem, losses: np.ndarray, n: int = 30,
                   taus: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)) -> Verdict:
    """Chapter 4: the tempering tau with the smallest E[Delta^2] at ``n``."""
    from kdlib import theory

    if unanswered(answer):
        return verdict(False, "", PLACEHOLDER_HINT)
    mse = {t: theory.lemma2_terms(problem, losses, theory.tempered_teacher(problem.bayes, t), n=n).mse for t in taus}
    best = min(mse, key=mse.get)
    if answer == best:
        return verdict(True, f"tau = {best:g} ({mse[best]:.5f}; tau = 1 gives {mse[1.0]:.5f}).", "")
    if answer == 1.0:
        return verdict(False, "", "tau = 1 has no bias, but compare variance term + squared bias, not bias alone.")
    return verdict(False, "", "compute variance_term + squared_bias for each tau and take the smallest.")


def check_stride_factor(answer: float) -> Verdict:
    """Chapter 6: the factor by which doubling the first-stage stride (1 -> 2) cuts the FLOPs of
    the [1, 1, 1, 1] student at width 1."""
    from kdlib.bench import count_flops
    from kdlib.models import cifar_resnet

    if unanswered(answer):
        return verdict(False, "", PLACEHOLDER_HINT)
    x = torch.zeros(1, 3, 32, 32)
    expected = count_flops(cifar_resnet((1, 1, 1, 1), stride=1), x) / count_flops(cifar_resnet((1, 1, 1, 1), stride=2), x)
    if abs(answer - expected) <= 0.01 * expected:
        return verdict(True, f"{expected:.2f}: less than 4, because the stem and the classifier do not shrink.", "")
    if answer == 4:
        return verdict(False, "", "4 is the factor for the strided stages alone; count the whole network.")
    return verdict(False, "", "divide count_flops at stride 1 by count_flops at stride 2.")
