"""How good a teacher's probabilities are, beyond its accuracy.

* :func:`log_loss`: mean ``-log p(y | x)`` on labelled data (lower is better; the risk that
  chapters 3 and 4 study).
* :func:`reliability_bins`: group predictions by their confidence (the largest probability) and
  compare each group's mean confidence with its accuracy; a calibrated model has them equal.
* :func:`expected_calibration_error` (ECE): the bins' ``|accuracy - confidence|`` gaps weighted
  by the fraction of examples in each bin (Guo et al., 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def check_probabilities(probs: Tensor, labels: Tensor) -> None:
    """Probabilities ``(N, C)`` with rows summing to 1, labels ``(N,)`` int64 class indices."""
    if probs.dim() != 2 or len(probs) == 0:
        raise ValueError(f"probs must have shape (N, C) with N >= 1, got {tuple(probs.shape)}")
    if labels.shape != (len(probs),) or labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64 of shape ({len(probs)},), got {labels.dtype} "
                         f"{tuple(labels.shape)} (use labels.long())")
    sums = probs.sum(dim=1)
    if (probs < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise ValueError("probs must be probability distributions (use logits.softmax(dim=1))")


def log_loss(logits: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(logits)``."""
    return F.cross_entropy(logits.float(), labels).item()


@dataclass(frozen=True)
class ReliabilityBins:
    """Per confidence bin: its edges, the number of examples, their mean confidence and accuracy."""

    edges: list[float]
    counts: list[int]
    confidence: list[float]  # NaN for an empty bin
    accuracy: list[float]  # NaN for an empty bin


def reliability_bins(probs: Tensor, labels: Tensor, bins: int = 15) -> ReliabilityBins:
    """Equal-width confidence bins on [0, 1] (the last one closed on the right)."""
    check_probabilities(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).double()
    index = torch.clamp((confidence.double() * bins).long(), max=bins - 1)
    counts, conf, acc = [], [], []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        counts.append(n)
        conf.append(confidence.double()[mask].mean().item() if n else float("nan"))
        acc.append(correct[mask].mean().item() if n else float("nan"))
    return ReliabilityBins([b / bins for b in range(bins + 1)], counts, conf, acc)


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = 15) -> float:
    """ECE = sum over bins of (bin size / N) * |accuracy - mean confidence|."""
    table = reliability_bins(probs, labels, bins)
    total = sum(table.counts)
    return sum(n / total * abs(a - c) for n, a, c in zip(table.counts, table.accuracy, table.confidence) if n)
