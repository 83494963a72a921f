"""Every exercise checker accepts the reference answer, rejects a typical mistake with a hint
that names it, and treats an untouched starter (``...``) as unanswered rather than crashing."""

from __future__ import annotations

import numpy as np
import torch

from kdlib import theory
from kdlib.course import checks
from kdlib.data import normalize


def test_mnist_test_mean(digits) -> None:
    expected = (digits.test_images.float() / 255).mean().item()
    assert checks.check_mnist_test_mean(expected, digits)
    assert "0-255" in repr(checks.check_mnist_test_mean(255 * expected, digits))
    assert "replace the ..." in repr(checks.check_mnist_test_mean(..., digits))


def test_normalization(digits) -> None:
    assert checks.check_normalization(lambda x: normalize(x, digits.mean, digits.std), digits)
    unscaled = checks.check_normalization(lambda x: (x.float() - digits.mean[0]) / digits.std[0], digits)
    assert not unscaled and "255" in repr(unscaled)
    assert not checks.check_normalization(lambda x: ..., digits)


def test_schemes() -> None:
    assert checks.check_schemes(checks.SCHEMES_EXERCISE)
    online_wrong = {**checks.SCHEMES_EXERCISE, "b": ("response", "offline")}
    assert not checks.check_schemes(online_wrong) and "frozen" in repr(checks.check_schemes(online_wrong))
    assert not checks.check_schemes(...)


def test_kd_gradient() -> None:
    def reference(z, v, T):
        return (torch.softmax(z / T, 0) - torch.softmax(v / T, 0)) / T

    assert checks.check_kd_gradient(reference)
    no_chain_rule = checks.check_kd_gradient(lambda z, v, T: torch.softmax(z / T, 0) - torch.softmax(v / T, 0))
    assert not no_chain_rule and "1 / T" in repr(no_chain_rule)


def test_gradient_factor() -> None:
    assert checks.check_gradient_factor(256)
    assert not checks.check_gradient_factor(16) and "1/T^2" in repr(checks.check_gradient_factor(16))


def test_equality_example() -> None:
    problem = theory.DiscreteProblem(np.array([1.0]), np.array([[0.5, 0.5, 0.0]]))
    assert checks.check_equality_example(problem, np.array([[1.0, 1.0, 3.0]]))
    assert not checks.check_equality_example(problem, np.array([[0.5, 1.0, 3.0]]))
    one_hot = theory.DiscreteProblem(np.array([1.0]), np.array([[1.0, 0.0, 0.0]]))
    assert "one-hot" in repr(checks.check_equality_example(one_hot, np.array([[1.0, 2.0, 3.0]])))


def test_data_worth(problem_and_losses) -> None:
    problem, losses = problem_and_losses
    ratio = theory.exact_moments(problem, losses, None).variance / theory.exact_moments(problem, losses,
                                                                                        problem.bayes).variance
    assert checks.check_data_worth(100 * ratio, problem, losses)
    assert "upside down" in repr(checks.check_data_worth(100 / ratio, problem, losses))


def test_best_tau(problem_and_losses) -> None:
    problem, losses = problem_and_losses
    mse = {t: theory.lemma2_terms(problem, losses, theory.tempered_teacher(problem.bayes, t), n=30).mse
           for t in (0.5, 1.0, 2.0, 4.0)}
    best = min(mse, key=mse.get)
    assert best != 1.0  # the exercise's point, on the chapter's problem
    assert checks.check_best_tau(best, problem, losses)
    assert "no bias" in repr(checks.check_best_tau(1.0, problem, losses))


def test_stride_factor() -> None:
    from kdlib.bench import count_flops
    from kdlib.models import cifar_resnet

    x = torch.zeros(1, 3, 32, 32)
    factor = count_flops(cifar_resnet((1, 1, 1, 1), stride=1), x) / count_flops(cifar_resnet((1, 1, 1, 1), stride=2), x)
    assert checks.check_stride_factor(factor)
    assert "whole network" in repr(checks.check_stride_factor(4))


def test_inflation_accepts_a_monte_carlo_answer_whatever_its_seed() -> None:
    """At k = 1 the expectation is 0 and only the simulation's own noise is left: the checker's
    tolerance must cover it for any seed, not just the one the reference solution uses."""
    import numpy as np

    from kdlib.course.checks import check_inflation

    for seed in range(10):
        def inflation(sigma: float, k: int, seed: int = seed, draws: int = 200_000) -> float:
            rng = np.random.default_rng(seed)
            return float(rng.normal(0.0, sigma, size=(draws, k)).max(axis=1).mean())

        assert check_inflation(inflation), seed
    assert not check_inflation(lambda sigma, k: sigma * 0.5)
