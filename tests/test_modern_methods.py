"""DKD, DIST, logit standardization and SP, each against an independent transcription of its
paper's formula: NumPy, one example (or one pair) at a time, written from the papers, not from
kdlib's code; and DKD's identity KL = TCKD + (1 - p_t) NCKD, checked numerically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlib.losses import kd_divergence
from kdlib.methods import DISTTerm, DKDTerm, SPTerm, StandardizedKDTerm, dkd_parts, standardize
from kdlib.models import mlp, seeded
from kdlib.terms import TERMS, Step, make_term
from kdlib.train import TrainConfig, train


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * (np.log(p) - np.log(q))))


def random_logits(n: int = 16, c: int = 10, seed: int = 0, scale: float = 3.0):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, c)) * scale, g.normal(size=(n, c)) * scale, g.integers(0, c, size=n)


def dkd_by_hand(zs, zt, y, T, alpha, beta):
    """Zhao et al., eq. (1)-(4), one example at a time."""
    total = 0.0
    for s, t, label in zip(zs, zt, y):
        ps, pt = softmax(s / T), softmax(t / T)
        bs = np.array([ps[label], 1 - ps[label]])
        bt = np.array([pt[label], 1 - pt[label]])
        others = [j for j in range(len(s)) if j != label]
        qs, qt = softmax(s[others] / T), softmax(t[others] / T)
        total += alpha * kl(bt, bs) + beta * kl(qt, qs)
    return T * T * total / len(zs)


@pytest.mark.parametrize("T,alpha,beta", [(1.0, 1.0, 8.0), (4.0, 1.0, 8.0), (2.0, 0.5, 2.0)])
def test_dkd_matches_the_paper(T, alpha, beta):
    zs, zt, y = random_logits(seed=int(T * 10))
    term = DKDTerm(alpha=alpha, beta=beta, temperature=T)
    step = Step(torch.arange(len(y)), torch.zeros(1), torch.tensor(y), torch.tensor(zs), torch.tensor(zt))
    assert term(step).item() == pytest.approx(dkd_by_hand(zs, zt, y, T, alpha, beta), rel=1e-5)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0])
def test_kd_is_tckd_plus_teacher_weighted_nckd(T):
    """KL(p_t || p_s) = TCKD + (1 - p_t^teacher) NCKD, per example."""
    zs, zt, y = random_logits(n=64, seed=7)
    tckd, nckd, p_target = dkd_parts(torch.tensor(zs), torch.tensor(zt), torch.tensor(y), T)
    for i in range(len(y)):
        whole = kl(softmax(zt[i] / T), softmax(zs[i] / T))
        assert (tckd[i] + (1 - p_target[i]) * nckd[i]).item() == pytest.approx(whole, rel=1e-5, abs=1e-7)
    batch = kd_divergence(torch.tensor(zs), torch.tensor(zt), T).item()
    assert (tckd + (1 - p_target) * nckd).mean().item() == pytest.approx(batch, rel=1e-5)


def test_dkd_warmup_ramps_the_weight():
    zs, zt, y = random_logits(seed=3)
    step = Step(torch.arange(len(y)), torch.zeros(1), torch.tensor(y), torch.tensor(zs), torch.tensor(zt))
    full = DKDTerm()(step).item()
    ramped = DKDTerm(warmup_steps=4)
    assert [round(ramped(step).item() / full, 6) for _ in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("T,beta,gamma", [(4.0, 1.0, 1.0), (1.0, 2.0, 2.0), (3.0, 1.0, 0.0)])
def test_dist_matches_the_paper(T, beta, gamma):
    zs, zt, _ = random_logits(n=32, seed=5)
    ys = np.array([softmax(r / T) for r in zs])
    yt = np.array([softmax(r / T) for r in zt])
    inter = 1 - np.mean([pearson(ys[i], yt[i]) for i in range(len(ys))])
    intra = 1 - np.mean([pearson(ys[:, j], yt[:, j]) for j in range(ys.shape[1])])
    expected = T * T * (beta * inter + gamma * intra)
    step = Step(torch.arange(32), torch.zeros(1), None, torch.tensor(zs), torch.tensor(zt))
    assert DISTTerm(beta=beta, gamma=gamma, temperature=T)(step).item() == pytest.approx(expected, rel=1e-5)


def test_dist_ignores_shift_and_scale_of_the_relations():
    """A student whose probabilities are an affine image of the teacher's, row by row, has
    inter-class correlation 1 (the inter part is zero)."""
    zt = torch.randn(8, 10, dtype=torch.float64)
    step = Step(torch.arange(8), torch.zeros(1), None, zt.clone(), zt)
    assert DISTTerm(beta=1.0, gamma=0.0, temperature=1.0)(step).item() == pytest.approx(0.0, abs=1e-6)


def test_standardize_is_the_z_score_with_the_sample_deviation():
    z, _, _ = random_logits(seed=9)
    expected = (z - z.mean(axis=1, keepdims=True)) / (z.std(axis=1, ddof=1, keepdims=True) + 1e-7)
    np.testing.assert_allclose(standardize(torch.tensor(z)).numpy(), expected, rtol=1e-6)


def test_standardized_kd_ignores_the_scale_and_shift_of_the_student_logits():
    """Standardized KD is the same for z and 3 z + 5: the temperature no longer couples scale."""
    zs, zt, _ = random_logits(seed=11)
    def value(student):
        step = Step(torch.arange(16), torch.zeros(1), None, torch.tensor(student), torch.tensor(zt))
        return StandardizedKDTerm(temperature=2.0)(step).item()
    assert value(zs) == pytest.approx(value(3 * zs + 5), rel=1e-5)
    zs_std = (zs - zs.mean(1, keepdims=True)) / (zs.std(1, ddof=1, keepdims=True) + 1e-7)
    zt_std = (zt - zt.mean(1, keepdims=True)) / (zt.std(1, ddof=1, keepdims=True) + 1e-7)
    by_hand = 4.0 * np.mean([kl(softmax(t / 2), softmax(s / 2)) for s, t in zip(zs_std, zt_std)])
    assert value(zs) == pytest.approx(by_hand, rel=1e-5)


def test_dkd_with_standardized_logits():
    zs, zt, y = random_logits(seed=13)
    zs_std = (zs - zs.mean(1, keepdims=True)) / (zs.std(1, ddof=1, keepdims=True) + 1e-7)
    zt_std = (zt - zt.mean(1, keepdims=True)) / (zt.std(1, ddof=1, keepdims=True) + 1e-7)
    step = Step(torch.arange(16), torch.zeros(1), torch.tensor(y), torch.tensor(zs), torch.tensor(zt))
    got = DKDTerm(temperature=2.0, standardize=True)(step).item()
    assert got == pytest.approx(dkd_by_hand(zs_std, zt_std, y, 2.0, 1.0, 8.0), rel=1e-5)


def sp_by_hand(fs: np.ndarray, ft: np.ndarray) -> float:
    """Tung and Mori, eq. (2)-(4): G = Q Q^T, rows L2-normalised, ||G_t - G_s||_F^2 / b^2."""
    b = len(fs)
    qs, qt = fs.reshape(b, -1), ft.reshape(b, -1)
    gs, gt = qs @ qs.T, qt @ qt.T
    gs = gs / np.linalg.norm(gs, axis=1, keepdims=True)
    gt = gt / np.linalg.norm(gt, axis=1, keepdims=True)
    return float(np.sum((gt - gs) ** 2) / b ** 2)


def test_sp_matches_the_paper_for_maps_of_different_shapes():
    g = np.random.default_rng(2)
    fs, ft = g.normal(size=(12, 8, 4, 4)), g.normal(size=(12, 32, 2, 2))
    step = Step(torch.arange(12), torch.zeros(1), None, torch.zeros(12, 10), None,
                features={"student.a": torch.tensor(fs), "teacher.b": torch.tensor(ft)})
    assert SPTerm([("a", "b")])(step).item() == pytest.approx(sp_by_hand(fs, ft), rel=1e-5)


def test_the_new_methods_are_registered_and_train():
    for name in ("dkd", "dist", "kd-std", "sp"):
        assert name in TERMS
    x, y = torch.randn(256, 20), torch.randint(0, 5, (256,))
    teacher_logits = torch.randn(256, 5) * 3
    for name in ("dkd", "dist", "kd-std"):
        student = seeded(lambda: mlp([16], in_features=20, num_classes=5), 0)
        log = train(student, x, y, TrainConfig(epochs=2, batch_size=64), teacher_logits=teacher_logits,
                    terms=[make_term("label"), make_term(name)])
        assert np.isfinite(log.epoch_losses).all() and name in log.term_losses[-1]


def test_dist_warmup_ramps_the_weight():
    zs, zt, y = random_logits(seed=4)
    step = Step(torch.arange(len(y)), torch.zeros(1), torch.tensor(y), torch.tensor(zs), torch.tensor(zt))
    full = DISTTerm()(step).item()
    ramped = DISTTerm(warmup_steps=2)
    assert [round(ramped(step).item() / full, 6) for _ in range(3)] == [0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="warmup_steps"):
        DISTTerm(warmup_steps=-1)
