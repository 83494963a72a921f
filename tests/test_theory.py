"""kdlib.theory: estimators against exact answers, Lemma 1 and Lemma 2, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from kdlib import theory


@pytest.fixture(scope="module")
def problem() -> theory.DiscreteProblem:
    return theory.DiscreteProblem.random(num_x=6, num_labels=3, seed=1)


@pytest.fixture(scope="module")
def losses(problem: theory.DiscreteProblem) -> np.ndarray:
    return theory.log_loss_vectors(np.random.default_rng(2).normal(size=problem.bayes.shape))


def test_sampling_follows_the_problem(problem: theory.DiscreteProblem) -> None:
    x, y = problem.sample(np.random.default_rng(0), 200, 500)
    freq_x = np.bincount(x.ravel(), minlength=6) / x.size
    assert np.allclose(freq_x, problem.marginal, atol=0.01)
    at0 = y[x == 0]
    assert np.allclose(np.bincount(at0, minlength=3) / at0.size, problem.bayes[0], atol=0.02)


def test_exact_variances_lie_in_monte_carlo_intervals(problem: theory.DiscreteProblem, losses: np.ndarray) -> None:
    n = 50
    risks = theory.simulate_discrete(problem, losses, n=n, repeats=20000, seed=3)
    for name, targets in (("empirical", None), ("bayes", problem.bayes)):
        exact = theory.exact_moments(problem, losses, targets)
        assert theory.variance_estimate(risks[name]).contains(exact.variance / n), name
        assert theory.mean_estimate(risks[name]).contains(exact.mean), name


def test_lemma1_bayes_variance_is_smaller(problem: theory.DiscreteProblem, losses: np.ndarray) -> None:
    empirical = theory.exact_moments(problem, losses, None)
    bayes = theory.exact_moments(problem, losses, problem.bayes)
    assert bayes.mean == pytest.approx(empirical.mean)
    assert bayes.variance < empirical.variance


def test_lemma1_equality_when_loss_is_constant_on_the_support() -> None:
    bayes = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    problem = theory.DiscreteProblem(np.array([0.3, 0.7]), bayes)
    losses = np.array([[0.2, 5.0, 1.0], [3.0, 0.7, 0.7]])  # equal on each x's support
    empirical = theory.exact_moments(problem, losses, None)
    assert theory.exact_moments(problem, losses, problem.bayes).variance == pytest.approx(empirical.variance)


def test_gaussian_problem_bayes_probabilities_and_moments() -> None:
    g = theory.GaussianProblem(means=np.array([-1.0, 1.0]), sigma=1.0, priors=np.array([0.5, 0.5]))
    assert np.allclose(g.bayes(np.array([0.0]))[0], [0.5, 0.5])
    # for equal priors and sigma = 1, P(y=1 | x) = sigmoid(2x)
    assert g.bayes(np.array([1.0]))[0, 1] == pytest.approx(1 / (1 + np.exp(-2.0)))
    x, w = g.grid()
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    weights, biases = np.array([-1.5, 1.5]), np.zeros(2)
    exact = theory.gaussian_moments(g, weights, biases)
    risks = theory.simulate_gaussian(g, weights, biases, n=40, repeats=20000, seed=0)
    assert theory.variance_estimate(risks["empirical"]).contains(exact["empirical"].variance / 40)
    assert theory.variance_estimate(risks["bayes"]).contains(exact["bayes"].variance / 40)


def test_lemma2_decomposition_matches_simulation(problem: theory.DiscreteProblem, losses: np.ndarray) -> None:
    teachers = theory.noisy_teachers(theory.tempered_teacher(problem.bayes, 2.0), noise=0.5, count=50, seed=4)
    terms = theory.lemma2_terms(problem, losses, teachers, n=20)
    delta = theory.simulate_delta(problem, losses, teachers, n=20, repeats=50000, seed=5)
    assert theory.mean_estimate(delta**2).contains(terms.mse)
    assert terms.mse <= terms.bound


def test_fixed_perfect_teacher_has_no_bias(problem: theory.DiscreteProblem, losses: np.ndarray) -> None:
    terms = theory.lemma2_terms(problem, losses, problem.bayes, n=10)
    assert terms.squared_bias == pytest.approx(0.0, abs=1e-20)
    assert terms.variance_term == pytest.approx(theory.exact_moments(problem, losses, problem.bayes).variance / 10)


def test_teachers_are_distributions_and_biased_as_designed(problem: theory.DiscreteProblem) -> None:
    for teacher in (theory.tempered_teacher(problem.bayes, 3.0), theory.smoothed_teacher(problem.bayes, 0.3)):
        theory.check_distributions("teacher", teacher)
        assert not np.allclose(teacher, problem.bayes)
    assert np.allclose(theory.tempered_teacher(problem.bayes, 1.0), problem.bayes)
    fitted = theory.fitted_teachers(problem, sample_size=100000, count=2, smoothing=0.0)
    assert np.allclose(fitted[0], problem.bayes, atol=0.03)


def test_mismatched_teacher_leaves_a_floor(problem: theory.DiscreteProblem) -> None:
    other = theory.DiscreteProblem.random(num_x=6, num_labels=3, seed=9)
    matched = theory.excess_risk(problem, theory.fit_student(problem, problem.bayes, 0.5, n=5000, repeats=20))
    mismatched = theory.excess_risk(problem, theory.fit_student(problem, other.bayes, 0.5, n=5000, repeats=20))
    assert mismatched.mean() > 10 * matched.mean()


def test_bad_input_raises_clear_errors(problem: theory.DiscreteProblem, losses: np.ndarray) -> None:
    with pytest.raises(ValueError, match="must sum to 1"):
        theory.DiscreteProblem(np.array([0.5, 0.6]), np.array([[1.0, 0.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="non-negative"):
        theory.DiscreteProblem(np.array([1.5, -0.5]), np.array([[1.0, 0.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="expected \\(K,\\) and \\(K, L\\)"):
        theory.DiscreteProblem(np.array([1.0]), np.array([[1.0, 0.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="positive integer"):
        theory.simulate_discrete(problem, losses, n=-5, repeats=10)
    with pytest.raises(ValueError, match="losses must have shape"):
        theory.exact_moments(problem, losses[:, :2], None)
    with pytest.raises(ValueError, match="at least 3"):
        theory.variance_estimate(np.array([1.0, 2.0]))
