"""Paired comparisons over seeds: the gap between two methods with a confidence interval.

A KD student and a labels-only student that share a seed share their initial weights, data order
and training subset, so the difference of their accuracies, seed by seed, removes the variation
that both have in common. :func:`paired_gap` summarises those differences with a Student-t 95%
confidence interval for their mean. Runs that share nothing (two recipes, each with its own seeds)
are compared by :func:`unpaired_gap`, Welch's interval for the difference of two means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats


class Interval:
    """What a gap with a confidence interval says: its mean and whether the interval excludes 0."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


@dataclass(frozen=True)
class PairedGap(Interval):
    """Mean of the paired differences ``a - b``, their standard deviation and a confidence interval."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float


def paired_gap(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedGap:
    """Summary of ``a[i] - b[i]`` over paired runs ``i`` (at least 2 pairs)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need the same length, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a confidence interval needs at least 2 pairs, got {len(a)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diffs = [x - y for x, y in zip(a, b)]
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError("the samples contain NaN or infinite values")
    n = len(diffs)
    mean = sum(diffs) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return PairedGap(mean, std, n, mean - half, mean + half, level)


def mean_interval(values: Sequence[float], level: float = 0.95) -> PairedGap:
    """The mean of ``values`` (at least 2) with its Student-t confidence interval: the paired
    summary of ``values`` against zeros."""
    return paired_gap(values, [0.0] * len(values), level)


@dataclass(frozen=True)
class UnpairedGap(Interval):
    """Difference of two independent means ``mean(a) - mean(b)``, its standard error and
    Welch's confidence interval (Welch-Satterthwaite degrees of freedom ``df``)."""

    mean: float
    se: float
    df: float
    low: float
    high: float
    level: float


def unpaired_gap(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> UnpairedGap:
    """Welch's interval for ``mean(a) - mean(b)`` from independent runs (at least 2 in each, not
    all equal in both)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"an unpaired interval needs at least 2 runs on each side, got {len(a)} and {len(b)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not all(math.isfinite(x) for x in [*a, *b]):
        raise ValueError("the samples contain NaN or infinite values")

    def mean_and_var(x: Sequence[float]) -> tuple[float, float]:
        m = sum(x) / len(x)
        return m, sum((v - m) ** 2 for v in x) / (len(x) - 1)

    (ma, va), (mb, vb) = mean_and_var(a), mean_and_var(b)
    qa, qb = va / len(a), vb / len(b)
    if qa + qb == 0:
        raise ValueError("both samples have no spread: an interval cannot be computed")
    se = math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / (len(a) - 1) + qb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return UnpairedGap(ma - mb, se, df, ma - mb - half, ma - mb + half, level)


def matching_rows(frame: pd.DataFrame, **conditions: Any) -> pd.DataFrame:
    """The rows of ``frame`` whose columns equal the values given (``column=value``); a value of
    ``None`` matches a missing value."""
    mask = pd.Series(True, index=frame.index)
    for column, value in conditions.items():
        mask &= frame[column].map(lambda v, want=value: pd.isna(v) if want is None else v == want).astype(bool)
    return frame[mask]


def _by_seed(frame: pd.DataFrame, conditions: dict[str, Any], column: str) -> pd.Series:
    """``column`` of the rows matching ``conditions``, indexed by their ``seed``."""
    return matching_rows(frame, **conditions).set_index("seed")[column]


def seed_differences(frame: pd.DataFrame, treated: dict[str, Any], baseline: dict[str, Any],
                     column: str = "accuracy_pct") -> pd.Series:
    """``column`` of the ``treated`` runs minus that of the ``baseline`` runs, seed by seed (the
    seeds both have; ``frame`` has one row per run with a ``seed`` column)."""
    return (_by_seed(frame, treated, column) - _by_seed(frame, baseline, column)).dropna()


def gap_by_seed(frame: pd.DataFrame, treated: dict[str, Any], baseline: dict[str, Any],
                column: str = "accuracy_pct") -> PairedGap:
    """:func:`paired_gap` of ``treated`` minus ``baseline`` runs, matched by seed."""
    a, b = _by_seed(frame, treated, column), _by_seed(frame, baseline, column)
    seeds = sorted(set(a.index) & set(b.index))
    return paired_gap([a[s] for s in seeds], [b[s] for s in seeds])
