"""Monte-Carlo toolkit for the two lemmas of chapters 3 and 4 (Menon et al., 2021).

Notation. Labels ``y`` in ``{0, ..., L-1}``; a fixed predictor ``f`` enters only through its loss
vector ``l(x) = (l(0, f(x)), ..., l(L-1, f(x)))`` (here the log-loss ``-log softmax(f(x))``).
For a sample ``S = ((x_1, y_1), ..., (x_N, y_N))`` of i.i.d. draws:

* empirical risk          ``R_hat(f; S)   = mean_n l(y_n, f(x_n))``         (one-hot labels)
* Bayes-distilled risk    ``R_star(f; S)  = mean_n p*(x_n) . l(x_n)``       (Bayes probabilities)
* distilled risk          ``R_tilde(f; S) = mean_n p_t(x_n) . l(x_n)``      (a teacher ``p_t``)

and the population risk ``R(f) = E_x[p*(x) . l(x)]``.

Two problems with exactly known Bayes probabilities ``p*(x)``:

* :class:`DiscreteProblem`: ``x`` takes finitely many values, so every expectation is a finite
  sum and the variances of the estimators are known in closed form;
* :class:`GaussianProblem`: ``x`` is real, each class is a Gaussian with its own mean and a
  shared variance, so ``p*(x)`` is a softmax of linear functions of ``x``; expectations are
  computed by numerical quadrature on a fine grid.

Everything is vectorised with numpy: a Monte-Carlo run draws ``(repeats, N)`` arrays at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import log_softmax, softmax


def check_distributions(name: str, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return ``p`` as float64 if it holds probability vectors along ``axis``; else raise ValueError."""
    p = np.asarray(p, dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    sums = p.sum(axis=axis)
    if not np.allclose(sums, 1.0, atol=1e-8):
        worst = float(np.max(np.abs(sums - 1.0)))
        raise ValueError(f"{name} must sum to 1 along axis {axis} (off by up to {worst:.3g}); normalise it")
    return p


def check_sample_size(n: int, name: str = "N") -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


# ------------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class DiscreteProblem:
    """``x`` in ``{0, ..., K-1}`` with probabilities ``marginal``; ``bayes[x]`` is ``p*(. | x)``."""

    marginal: np.ndarray  # (K,)
    bayes: np.ndarray  # (K, L)

    def __post_init__(self) -> None:
        object.__setattr__(self, "marginal", check_distributions("marginal", self.marginal))
        object.__setattr__(self, "bayes", check_distributions("bayes", self.bayes))
        if self.bayes.ndim != 2 or self.marginal.shape != (self.bayes.shape[0],):
            raise ValueError(f"marginal has shape {self.marginal.shape} but bayes has shape "
                             f"{self.bayes.shape}: expected (K,) and (K, L)")

    @property
    def num_labels(self) -> int:
        return self.bayes.shape[1]

    @classmethod
    def random(cls, num_x: int, num_labels: int, concentration: float = 1.0, seed: int = 0) -> DiscreteProblem:
        """A random problem: uniform-ish marginal, Dirichlet(``concentration``) class probabilities."""
        rng = np.random.default_rng(seed)
        return cls(marginal=rng.dirichlet(np.full(num_x, 5.0)),
                   bayes=rng.dirichlet(np.full(num_labels, concentration), size=num_x))

    def sample(self, rng: np.random.Generator, repeats: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``repeats`` independent samples of size ``n``: arrays ``x`` and ``y`` of shape (repeats, n)."""
        check_sample_size(n)
        x = rng.choice(len(self.marginal), size=(repeats, n), p=self.marginal)
        cdf = np.cumsum(self.bayes, axis=1)
        u = rng.random((repeats, n, 1))
        y = np.minimum((u > cdf[x]).sum(axis=-1), self.num_labels - 1)
        return x, y


@dataclass(frozen=True)
class GaussianProblem:
    """1-D classes: ``x | y ~ Normal(means[y], sigma**2)``, ``P(y) = priors[y]``."""

    means: np.ndarray
    sigma: float
    priors: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "means", np.asarray(self.means, dtype=np.float64))
        object.__setattr__(self, "priors", check_distributions("priors", self.priors))
        if self.means.shape != self.priors.shape or self.sigma <= 0:
            raise ValueError("means and priors need the same shape (L,), and sigma must be > 0")

    @property
    def num_labels(self) -> int:
        return len(self.means)

    def bayes(self, x: np.ndarray) -> np.ndarray:
        """``p*(y | x)``, a softmax of functions linear in ``x``: shape ``x.shape + (L,)``."""
        x = np.asarray(x, dtype=np.float64)[..., None]
        logits = np.log(self.priors) + (self.means * x - 0.5 * self.means**2) / self.sigma**2
        return softmax(logits, axis=-1)

    def density(self, x: np.ndarray) -> np.ndarray:
        """The marginal density of ``x``."""
        x = np.asarray(x, dtype=np.float64)[..., None]
        return (self.priors * stats.norm.pdf(x, self.means, self.sigma)).sum(-1)

    def sample(self, rng: np.random.Generator, repeats: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        check_sample_size(n)
        y = rng.choice(self.num_labels, size=(repeats, n), p=self.priors)
        x = rng.normal(self.means[y], self.sigma)
        return x, y

    def grid(self, points: int = 4001) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes covering all classes to 10 sigma, and their weights (density * dx)."""
        lo, hi = self.means.min() - 10 * self.sigma, self.means.max() + 10 * self.sigma
        x = np.linspace(lo, hi, points)
        return x, self.density(x) * (x[1] - x[0])


# ------------------------------------------------------------------------------------------------
# Predictors and their loss vectors


def log_loss_vectors(logits: np.ndarray) -> np.ndarray:
    """``l(y, f(x)) = -log softmax(f(x))_y`` for every label: same shape as ``logits``."""
    return -log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def linear_logits(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """Logits ``weights * x + biases`` of a 1-D linear predictor: shape ``x.shape + (L,)``."""
    return np.asarray(x, dtype=np.float64)[..., None] * weights + biases


# ------------------------------------------------------------------------------------------------
# Exact moments (discrete problem) and Monte-Carlo estimates


@dataclass(frozen=True)
class Moments:
    """Mean and variance of a per-example term; the risk estimator's variance is ``variance / N``."""

    mean: float
    variance: float


def exact_moments(problem: DiscreteProblem, losses: np.ndarray, targets: np.ndarray | None) -> Moments:
    """Exact mean and variance of the per-example term of a risk estimator on a discrete problem.

    ``targets=None`` is the empirical risk (term ``l(y, f(x))`` with ``y ~ p*(x)``); otherwise
    ``targets[x]`` is the distribution the term uses (``problem.bayes`` for the Bayes-distilled
    risk, a teacher for the distilled risk): term ``targets[x] . l(x)``.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape != problem.bayes.shape:
        raise ValueError(f"losses must have shape {problem.bayes.shape} (K, L), got {losses.shape}")
    if targets is None:
        first = (problem.bayes * losses).sum(1)
        second = (problem.bayes * losses**2).sum(1)
    else:
        targets = check_distributions("targets", targets)
        if targets.shape != losses.shape:
            raise ValueError(f"targets must have shape {losses.shape}, got {targets.shape}")
        first = (targets * losses).sum(1)
        second = first**2
    mean = float(problem.marginal @ first)
    return Moments(mean=mean, variance=float(problem.marginal @ second - mean**2))


@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate with a 95% confidence interval."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


def mean_estimate(samples: np.ndarray, level: float = 0.95) -> Estimate:
    """Sample mean with a normal (CLT) confidence interval."""
    samples = np.asarray(samples, dtype=np.float64)
    half = stats.norm.ppf(0.5 + level / 2) * samples.std(ddof=1) / np.sqrt(len(samples))
    return Estimate(float(samples.mean()), float(samples.mean() - half), float(samples.mean() + half))


def variance_estimate(samples: np.ndarray, level: float = 0.95) -> Estimate:
    """Sample variance with the chi-square confidence interval.

    The interval ``[(M-1) s^2 / chi2_{1-a/2}, (M-1) s^2 / chi2_{a/2}]`` is exact for normal
    samples. A risk estimate is a mean of N i.i.d. terms, hence close to normal for moderate N
    (central limit theorem), which is the case the chapters use it for.
    """
    samples = np.asarray(samples, dtype=np.float64)
    m = len(samples)
    if m < 3:
        raise ValueError(f"need at least 3 Monte-Carlo repeats for a variance interval, got {m}")
    s2 = samples.var(ddof=1)
    alpha = 1 - level
    return Estimate(float(s2), float((m - 1) * s2 / stats.chi2.ppf(1 - alpha / 2, m - 1)),
                    float((m - 1) * s2 / stats.chi2.ppf(alpha / 2, m - 1)))


def risk_samples(losses_at_x: np.ndarray, y: np.ndarray, targets_at_x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Risk estimates for each of ``repeats`` samples.

    ``losses_at_x``: loss vectors at the sampled points, shape (repeats, N, L); ``y``: labels
    (repeats, N); ``targets_at_x``: named target distributions at the same points. Returns
    ``{"empirical": (repeats,), name: (repeats,), ...}``.
    """
    empirical = np.take_along_axis(losses_at_x, y[..., None], axis=-1)[..., 0].mean(-1)
    out = {"empirical": empirical}
    for name, targets in targets_at_x.items():
        out[name] = (targets * losses_at_x).sum(-1).mean(-1)
    return out


def simulate_discrete(problem: DiscreteProblem, losses: np.ndarray, n: int, repeats: int,
                      teachers: dict[str, np.ndarray] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Monte-Carlo risk estimates on a discrete problem: empirical, Bayes and each teacher's."""
    check_sample_size(repeats, "repeats")
    rng = np.random.default_rng(seed)
    x, y = problem.sample(rng, repeats, n)
    targets = {"bayes": problem.bayes[x]}
    for name, teacher in (teachers or {}).items():
        targets[name] = check_distributions(name, teacher)[x]
    return risk_samples(losses[x], y, targets)


def simulate_gaussian(problem: GaussianProblem, weights: np.ndarray, biases: np.ndarray, n: int,
                      repeats: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Monte-Carlo empirical and Bayes-distilled risks of a linear predictor on a Gaussian problem."""
    check_sample_size(repeats, "repeats")
    rng = np.random.default_rng(seed)
    x, y = problem.sample(rng, repeats, n)
    losses = log_loss_vectors(linear_logits(x, weights, biases))
    return risk_samples(losses, y, {"bayes": problem.bayes(x)})


def gaussian_moments(problem: GaussianProblem, weights: np.ndarray, biases: np.ndarray) -> dict[str, Moments]:
    """Per-example mean and variance of the empirical and Bayes terms, by quadrature."""
    x, w = problem.grid()
    losses = log_loss_vectors(linear_logits(x, weights, biases))
    p = problem.bayes(x)
    mean = float(w @ (p * losses).sum(1))
    return {"empirical": Moments(mean, float(w @ (p * losses**2).sum(1) - mean**2)),
            "bayes": Moments(mean, float(w @ (p * losses).sum(1) ** 2 - mean**2))}


# ------------------------------------------------------------------------------------------------
# Teachers with controllable error


def tempered_teacher(bayes: np.ndarray, tau: float) -> np.ndarray:
    """A miscalibrated teacher: ``softmax(log p*(x) / tau)``; ``tau > 1`` smooths, ``tau < 1`` sharpens."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    return softmax(np.log(np.clip(bayes, 1e-300, None)) / tau, axis=-1)


def smoothed_teacher(bayes: np.ndarray, epsilon: float) -> np.ndarray:
    """A teacher mixed towards uniform: ``(1 - epsilon) p*(x) + epsilon / L``."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    return (1 - epsilon) * bayes + epsilon / bayes.shape[-1]


def noisy_teachers(bayes: np.ndarray, noise: float, count: int, seed: int = 0) -> np.ndarray:
    """``count`` random teachers ``softmax(log p*(x) + noise * g)``, ``g`` standard normal:
    shape ``(count,) + bayes.shape``."""
    rng = np.random.default_rng(seed)
    logits = np.log(np.clip(bayes, 1e-300, None))
    return softmax(logits + noise * rng.standard_normal((count,) + bayes.shape), axis=-1)


def fitted_teachers(problem: DiscreteProblem, sample_size: int, count: int, smoothing: float = 1.0,
                    seed: int = 0) -> np.ndarray:
    """``count`` teachers, each fitted on its own sample: smoothed label frequencies per ``x``."""
    rng = np.random.default_rng(seed)
    x, y = problem.sample(rng, count, sample_size)
    counts = np.zeros((count, len(problem.marginal), problem.num_labels))
    np.add.at(counts, (np.arange(count)[:, None], x, y), 1.0)
    counts += smoothing
    return counts / counts.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# Lemma 2: the decomposition of E[Delta^2] and its bound


@dataclass(frozen=True)
class Lemma2Terms:
    """Exact terms of Lemma 2 for a discrete problem, a predictor and a (possibly random) teacher.

    ``mse = variance_term + squared_bias`` holds exactly, with ``variance_term`` the mean over
    teachers of ``Var_x[p_t(x) . l(x)] / N`` and ``squared_bias`` the mean over teachers of
    ``(E_x[(p_t(x) - p*(x)) . l(x)])^2``. The bound replaces the squared bias by
    ``c^2 * E_x[ ||E p_t(x) - p*(x)||^2 + tr Var p_t(x) ]`` with ``c = max_x ||l(x)||_2``.
    Since ``p_t(x) - p*(x)`` sums to 0, ``l(x)`` may be centred first (minus its mean over the
    labels), which gives the smaller constant ``c_centred`` and the tighter ``bound_centred``.
    """

    variance_term: float
    squared_bias: float
    teacher_bias_sq: float  # E_x ||E_t p_t(x) - p*(x)||^2
    teacher_variance: float  # E_x tr Var_t p_t(x)
    c: float
    c_centred: float

    @property
    def mse(self) -> float:
        return self.variance_term + self.squared_bias

    @property
    def bound(self) -> float:
        return self.variance_term + self.c**2 * (self.teacher_bias_sq + self.teacher_variance)

    @property
    def bound_centred(self) -> float:
        return self.variance_term + self.c_centred**2 * (self.teacher_bias_sq + self.teacher_variance)


def lemma2_terms(problem: DiscreteProblem, losses: np.ndarray, teachers: np.ndarray, n: int) -> Lemma2Terms:
    """Lemma 2's terms for teachers ``(count, K, L)`` drawn independently of the sample of size ``n``."""
    check_sample_size(n)
    teachers = np.asarray(teachers, dtype=np.float64)
    if teachers.ndim == 2:
        teachers = teachers[None]
    check_distributions("teachers", teachers)
    per_x = (teachers * losses).sum(-1)  # (count, K)
    means = per_x @ problem.marginal  # (count,)
    variances = (per_x**2) @ problem.marginal - means**2
    risk = float(problem.marginal @ (problem.bayes * losses).sum(1))
    avg = teachers.mean(0)
    return Lemma2Terms(
        variance_term=float(variances.mean() / n),
        squared_bias=float(((means - risk) ** 2).mean()),
        teacher_bias_sq=float(problem.marginal @ ((avg - problem.bayes) ** 2).sum(1)),
        teacher_variance=float(problem.marginal @ teachers.var(0).sum(1)),
        c=float(np.sqrt((losses**2).sum(1)).max()),
        c_centred=float(np.sqrt(((losses - losses.mean(1, keepdims=True)) ** 2).sum(1)).max()),
    )


def simulate_delta(problem: DiscreteProblem, losses: np.ndarray, teachers: np.ndarray, n: int,
                   repeats: int, seed: int = 0) -> np.ndarray:
    """Monte-Carlo draws of ``Delta = R_tilde(f; S) - R(f)``: each repeat draws a sample and a
    teacher (cycling through ``teachers``), independently of each other."""
    check_sample_size(repeats, "repeats")
    teachers = np.asarray(teachers, dtype=np.float64)
    if teachers.ndim == 2:
        teachers = teachers[None]
    rng = np.random.default_rng(seed)
    x, _ = problem.sample(rng, repeats, n)
    which = np.arange(repeats) % len(teachers)
    targets = teachers[which[:, None], x]  # (repeats, n, L)
    risk = float(problem.marginal @ (problem.bayes * losses).sum(1))
    return (targets * losses[x]).sum(-1).mean(-1) - risk


def same_sample_deltas(problem: DiscreteProblem, losses: np.ndarray, n: int, repeats: int,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """What goes wrong when the teacher is fitted on the sample ``S`` itself (Lemma 2 assumes it
    is not): for each of ``repeats`` samples, a teacher is the (unsmoothed) label frequency at
    each ``x`` of ``S``. Returns ``Delta`` for the empirical risk, for the distilled risk with that
    teacher, and the two terms of Lemma 2 (a) for that teacher taken as fixed: the variance term
    and the squared bias (the lemma's value of ``E[Delta^2]`` is their sum)."""
    check_sample_size(repeats, "repeats")
    rng = np.random.default_rng(seed)
    x, y = problem.sample(rng, repeats, n)
    counts = np.zeros((repeats, len(problem.marginal), problem.num_labels))
    np.add.at(counts, (np.arange(repeats)[:, None], x, y), 1.0)
    seen = counts.sum(-1, keepdims=True)
    teachers = np.where(seen > 0, counts / np.maximum(seen, 1), problem.bayes[None])  # unseen x: any
    risk = float(problem.marginal @ (problem.bayes * losses).sum(1))
    rows = np.arange(repeats)[:, None]
    empirical = np.take_along_axis(losses[x], y[..., None], axis=-1)[..., 0].mean(-1) - risk
    distilled = (teachers[rows, x] * losses[x]).sum(-1).mean(-1) - risk
    per_x = (teachers * losses).sum(-1)  # (repeats, K)
    lemma_variance = ((per_x**2) @ problem.marginal - (per_x @ problem.marginal) ** 2) / n
    bias = per_x @ problem.marginal - risk  # b(p^t) of each sample's teacher
    return {"empirical": empirical, "distilled (teacher fitted on S)": distilled,
            "Lemma 2 (a) variance term, teacher taken as fixed": lemma_variance,
            "Lemma 2 (a) squared bias, teacher taken as fixed": bias**2}


# ------------------------------------------------------------------------------------------------
# Distillation under a mismatched distribution


def fit_student(problem: DiscreteProblem, teacher: np.ndarray, label_weight: float, n: int,
                repeats: int, smoothing: float = 1.0, seed: int = 0) -> np.ndarray:
    """Students fitted on ``repeats`` samples of size ``n``: for each ``x`` the distribution that
    minimises ``label_weight * CE(labels) + (1 - label_weight) * CE(teacher)``, i.e. the mixture
    ``label_weight * (smoothed label frequencies at x) + (1 - label_weight) * teacher(x)``.

    Returns ``(repeats, K, L)``. A student that never saw ``x`` falls back to the smoothed
    frequencies (uniform) and the teacher.
    """
    if not 0 <= label_weight <= 1:
        raise ValueError(f"label_weight must be in [0, 1], got {label_weight!r}")
    teacher = check_distributions("teacher", teacher)
    rng = np.random.default_rng(seed)
    x, y = problem.sample(rng, repeats, n)
    counts = np.zeros((repeats, len(problem.marginal), problem.num_labels))
    np.add.at(counts, (np.arange(repeats)[:, None], x, y), 1.0)
    counts += smoothing
    frequencies = counts / counts.sum(-1, keepdims=True)
    return label_weight * frequencies + (1 - label_weight) * teacher[None]


def excess_risk(problem: DiscreteProblem, students: np.ndarray) -> np.ndarray:
    """True excess log-loss risk ``E_x KL(p*(x) || q(x))`` of each student ``q``: shape (repeats,)."""
    p = problem.bayes
    kl = (p * (np.log(np.clip(p, 1e-300, None)) - np.log(students))).sum(-1)
    return kl @ problem.marginal


# ------------------------------------------------------------------------------------------------
# Experiment helpers for the chapters

MONTE_CARLO_REPEATS = {"quick": 2_000, "full": 20_000, "paper": 100_000}


def monte_carlo_repeats(profile: str) -> int:
    """How many independent samples S a profile draws per Monte-Carlo estimate."""
    from kdlib.profile import check_profile

    return MONTE_CARLO_REPEATS[check_profile(profile)]


def lemma1_table(problem: DiscreteProblem, predictors: dict[str, np.ndarray], sizes: list[int],
                 repeats: int, seed: int = 0) -> pd.DataFrame:
    """For each predictor and sample size N: exact and Monte-Carlo variances (with 95% intervals)
    of the empirical and Bayes-distilled risks."""
    rows = []
    for i, (name, losses) in enumerate(predictors.items()):
        exact_emp = exact_moments(problem, losses, None)
        exact_bayes = exact_moments(problem, losses, problem.bayes)
        for j, n in enumerate(sizes):
            risks = simulate_discrete(problem, losses, n=n, repeats=repeats, seed=seed + 1000 * i + j)
            emp, bay = variance_estimate(risks["empirical"]), variance_estimate(risks["bayes"])
            rows.append({
                "predictor": name, "N": n,
                "Var emp (exact)": exact_emp.variance / n, "Var emp (MC)": emp.value,
                "emp CI low": emp.low, "emp CI high": emp.high,
                "Var Bayes (exact)": exact_bayes.variance / n, "Var Bayes (MC)": bay.value,
                "Bayes CI low": bay.low, "Bayes CI high": bay.high,
                "exact in both CIs": emp.contains(exact_emp.variance / n)
                and bay.contains(exact_bayes.variance / n),
            })
    return pd.DataFrame(rows)


def lemma2_table(problem: DiscreteProblem, losses: np.ndarray, teachers: dict[str, np.ndarray],
                 sizes: list[int], repeats: int, seed: int = 0) -> pd.DataFrame:
    """For each teacher (a ``(K, L)`` fixed teacher or ``(count, K, L)`` random ones) and N: the
    exact terms of Lemma 2, its bound, and the Monte-Carlo ``E[Delta^2]`` with a 95% interval."""
    rows = []
    for i, (name, teacher) in enumerate(teachers.items()):
        for j, n in enumerate(sizes):
            terms = lemma2_terms(problem, losses, teacher, n)
            mc = mean_estimate(simulate_delta(problem, losses, teacher, n, repeats, seed=seed + 1000 * i + j) ** 2)
            rows.append({"teacher": name, "N": n, "variance term": terms.variance_term,
                         "squared bias": terms.squared_bias, "E[Delta^2] exact": terms.mse,
                         "E[Delta^2] MC": mc.value, "MC CI low": mc.low, "MC CI high": mc.high,
                         "bound": terms.bound, "bound (centred c)": terms.bound_centred,
                         "exact in CI": mc.contains(terms.mse),
                         "bound holds": terms.mse <= terms.bound_centred <= terms.bound})
    return pd.DataFrame(rows)


def mismatch_table(problem: DiscreteProblem, teachers: dict[str, np.ndarray], sizes: list[int],
                   repeats: int, label_weight: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Mean true excess risk (with a 95% interval) of students fitted on samples of ``problem``:
    one on labels alone (``label_weight = 1``) and one per teacher (mixing labels and teacher by
    ``label_weight``)."""
    rows = []
    for j, n in enumerate(sizes):
        fits = {"labels only": fit_student(problem, problem.bayes, 1.0, n, repeats, seed=seed + j)}
        for name, teacher in teachers.items():
            fits[name] = fit_student(problem, teacher, label_weight, n, repeats, seed=seed + j)
        for name, students in fits.items():
            est = mean_estimate(excess_risk(problem, students))
            rows.append({"student": name, "N": n, "excess risk": est.value, "CI low": est.low, "CI high": est.high})
    return pd.DataFrame(rows)
