"""kdlib.losses against references, gradients, limits, invariances and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.losses import DistillationLoss, distillation_loss, kd_divergence, softmax_cross_entropy



@pytest.fixture()
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(16, 10, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 10, (16,), generator=g)
    return student, teacher, labels


def test_cross_entropy_matches_torch_and_the_formula(logits) -> None:
    student, teacher, labels = logits
    ours = softmax_cross_entropy(student, labels)
    assert torch.allclose(ours, F.cross_entropy(student, labels), atol=1e-12)
    direct = (-student[torch.arange(16), labels] + torch.logsumexp(student, 1)).mean()
    assert torch.allclose(ours, direct, atol=1e-12)
    soft = F.softmax(teacher, 1)
    assert torch.allclose(softmax_cross_entropy(student, soft), F.cross_entropy(student, soft), atol=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.5, 20.0])
def test_kd_divergence_matches_kl_div_batchmean_and_the_formula(logits, temperature: float) -> None:
    student, teacher, _ = logits
    ours = kd_divergence(student, teacher, temperature)
    reference = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                         reduction="batchmean", log_target=True)
    assert torch.allclose(ours, reference, atol=1e-12)
    p = torch.softmax(teacher / temperature, 1)
    q = torch.softmax(student / temperature, 1)
    direct = (p * torch.log(p / q)).sum(1).mean()
    assert torch.allclose(ours, direct, atol=1e-10)


def test_distillation_loss_mixes_the_two_terms(logits) -> None:
    student, teacher, labels = logits
    t, a = 3.5, 0.3
    expected = a * F.cross_entropy(student, labels) + (1 - a) * t * t * kd_divergence(student, teacher, t)
    assert torch.allclose(distillation_loss(student, teacher, labels, t, a), expected, atol=1e-12)
    assert torch.allclose(DistillationLoss(t, a)(student, teacher, labels), expected, atol=1e-12)
    assert torch.allclose(distillation_loss(student, teacher, labels, t, 1.0), F.cross_entropy(student, labels))


def test_gradcheck(logits) -> None:
    student, teacher, labels = logits
    student = student[:4].clone().requires_grad_(True)
    teacher = teacher[:4].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, v: distillation_loss(s, v, labels[:4], 2.0, 0.4), (student, teacher))
    assert torch.autograd.gradcheck(lambda s: softmax_cross_entropy(s, labels[:4]), (student,))


def test_zero_loss_when_student_equals_teacher_and_label_weight_is_zero(logits) -> None:
    _, teacher, labels = logits
    assert distillation_loss(teacher.clone(), teacher, labels, 4.0, 0.0).abs().item() < 1e-12
    assert distillation_loss(teacher.clone(), teacher, None, 4.0, 0.0).abs().item() < 1e-12


def test_kd_term_is_invariant_to_shifting_all_logits(logits) -> None:
    student, teacher, _ = logits
    base = kd_divergence(student, teacher, 2.0)
    assert torch.allclose(kd_divergence(student + 7.5, teacher - 3.0, 2.0), base, atol=1e-12)


def test_high_temperature_gradient_approaches_centred_logit_matching() -> None:
    """Hinton et al. (2015), sec. 2.1: d KL / d z_i -> ((z_i - mean z) - (v_i - mean v)) / (L T^2);
    the logits here are not centred, so the uncentred (z_i - v_i) / (L T^2) must NOT match."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 10, generator=g, dtype=torch.float64) + 2.0
    v = torch.randn(1, 10, generator=g, dtype=torch.float64) - 1.0
    errors = []
    for temperature in (10.0, 100.0, 1000.0):
        zz = z.clone().requires_grad_(True)
        kd_divergence(zz, v, temperature).backward()
        centred = ((z - z.mean()) - (v - v.mean())) / (10 * temperature**2)
        errors.append(((zz.grad - centred).abs().max() / centred.abs().max()).item())
        uncentred = (z - v) / (10 * temperature**2)
        assert ((zz.grad - uncentred).abs().max() / uncentred.abs().max()).item() > 0.5
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_stable_for_extreme_logits() -> None:
    student = torch.tensor([[1000.0, -1000.0, 0.0]])
    teacher = torch.tensor([[-1000.0, 1000.0, 0.0]])
    loss = distillation_loss(student, teacher, torch.tensor([0]), 1.0, 0.5)
    assert math.isfinite(loss.item()) and loss.item() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=0.0), r"temperature must be a number in \[0.0001, 10000\]"),
        (dict(temperature=-1.0), r"temperature must be a number in \[0.0001, 10000\]"),
        (dict(temperature=float("nan")), r"temperature must be a number in \[0.0001, 10000\]"),
        (dict(temperature=float("inf")), r"temperature must be a number in \[0.0001, 10000\]"),
        (dict(label_weight=1.5), r"label_weight must be in \[0, 1\]"),
        (dict(label_weight=-0.1), r"label_weight must be in \[0, 1\]"),
        (dict(teacher=torch.zeros(4, 9)), "same shape"),
        (dict(targets=torch.tensor([0, 1, 2, 10])), r"class indices in \[0, 9\]"),
        (dict(targets=torch.tensor([0, 1, 2, -1])), r"class indices in \[0, 9\]"),
        (dict(targets=torch.tensor([0, 1, 2, 3], dtype=torch.int32)), "int64"),
        (dict(targets=torch.tensor([0, 1, 2])), r"shape \(4,\)"),
        (dict(targets=torch.full((4, 10), 0.5)), "probability distributions"),
        (dict(student=torch.full((4, 10), float("nan"))), "student_logits contains NaN"),
        (dict(teacher=torch.full((4, 10), float("inf"))), "teacher_logits contains NaN or infinite"),
        (dict(student=torch.zeros(4, 10, dtype=torch.int64)), "floating-point"),
        (dict(student=torch.zeros(40)), r"shape \(batch, classes\)"),
        (dict(targets=None), "targets are needed unless label_weight == 0"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs: dict, message: str) -> None:
    args = dict(student=torch.zeros(4, 10), teacher=torch.zeros(4, 10), targets=torch.tensor([0, 1, 2, 3]),
                temperature=2.0, label_weight=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        distillation_loss(args["student"], args["teacher"], args["targets"], args["temperature"], args["label_weight"])


def test_module_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=0)
    assert "temperature=4.0" in repr(DistillationLoss(4.0, 0.5))


def test_the_old_name_alpha_is_refused_with_what_changed(logits) -> None:
    z, v, y = logits
    for call in (lambda: distillation_loss(z, v, y, 2.0, alpha=0.3),
                 lambda: DistillationLoss(2.0, alpha=0.3)):
        with pytest.raises(ValueError, match="no longer takes alpha") as error:
            call()
        assert "label_weight=0.3 gives kdlib's old loss" in str(error.value)
        assert "label_weight=0.7" in str(error.value)
    with pytest.raises(TypeError, match="needs label_weight"):
        distillation_loss(z, v, y, 2.0)
