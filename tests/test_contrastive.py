"""kdlib.methods.crd: CRD's loss, its negatives, its memory banks, and the term in training."""

from __future__ import annotations

import math

import pytest
import torch

from kdlib.methods.crd import CRDTerm, OtherClassSampler, nce_loss
from kdlib.models import cifar_resnet, seeded
from kdlib.methods import LabelTerm
from kdlib.terms import TERMS, Step
from kdlib.train import TrainConfig, train


def test_nce_loss_by_hand() -> None:
    scores = torch.tensor([[0.5, 0.1, 0.2]])  # one positive, two negatives
    noise = 2 / 10  # K / N
    expected = -(math.log(0.5 / (0.5 + noise + 1e-7)) + math.log(noise / (0.1 + noise + 1e-7))
                 + math.log(noise / (0.2 + noise + 1e-7)))
    assert nce_loss(scores, n_data=10).item() == pytest.approx(expected, rel=1e-6)


def test_negatives_come_from_other_classes_after_the_image_itself() -> None:
    labels = torch.arange(40) % 4
    sampler = OtherClassSampler(labels, k=50, seed=3)
    batch = torch.tensor([0, 5, 10, 39])
    rows = sampler(batch)
    assert rows.shape == (4, 51) and torch.equal(rows[:, 0], batch)
    assert (labels[rows[:, 1:]] != labels[batch].unsqueeze(1)).all()
    assert torch.equal(OtherClassSampler(labels, k=50, seed=3)(batch), rows)  # seeded
    with pytest.raises(ValueError, match="one class only"):
        OtherClassSampler(torch.zeros(5, dtype=torch.long), k=2)


def toy_step(features: dict[str, torch.Tensor], indices: torch.Tensor, check: bool) -> Step:
    return Step(indices, torch.empty(0), None, torch.zeros(len(indices), 10), None, features, check)


def test_the_embeddings_learn_to_tell_the_positive_pair_and_the_banks_stay_unit_length() -> None:
    torch.manual_seed(0)
    n = 256
    student_features = torch.randn(n, 16)
    teacher_features = student_features @ torch.randn(16, 24)  # the same images, seen otherwise
    labels = torch.randint(0, 10, (n,))
    crd = CRDTerm("a", "b", 16, 24, labels, negatives=64, weight=1.0)
    optimizer = torch.optim.SGD(crd.parameters(), lr=0.1, momentum=0.9)
    epoch_losses = []
    for epoch in range(8):
        total = 0.0
        for batch in torch.randperm(n).split(32):
            features = {"student.a": student_features[batch], "teacher.b": teacher_features[batch]}
            loss = crd(toy_step(features, batch, check=epoch == 0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        epoch_losses.append(total)
    assert epoch_losses[-1] < 0.5 * epoch_losses[0]
    assert torch.allclose(crd.bank_student.norm(dim=1), torch.ones(n), atol=1e-5)
    with pytest.raises(ValueError, match="beyond the 256 labels"):
        crd(toy_step({"student.a": student_features[:2], "teacher.b": teacher_features[:2]},
                     torch.tensor([0, 300]), check=True))


def test_crd_in_train_trains_its_embeddings_and_never_the_teacher() -> None:
    assert TERMS["crd"] is CRDTerm
    teacher = seeded(lambda: cifar_resnet((1, 1, 0, 0), width=0.0625), 0).eval()
    student = seeded(lambda: cifar_resnet((1, 0, 0, 0), width=0.0625), 1)
    x = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    y = torch.arange(32) % 10
    crd = CRDTerm("head.1", "head.1", student.head[-1].in_features, teacher.head[-1].in_features, y,
                  negatives=8)
    before = [p.clone() for p in teacher.parameters()]
    embed = crd.embed_teacher.weight.clone()
    log = train(student, x, y, TrainConfig(batch_size=8), teacher=teacher, terms=[LabelTerm(), crd])
    assert set(log.term_losses[0]) == {"label", "crd"} and log.term_losses[0]["crd"] > 0
    assert not torch.equal(embed, crd.embed_teacher.weight)  # its own parameters reach the optimiser
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    with pytest.raises(ValueError, match="CRD expects features of sizes 99"):
        wrong = CRDTerm("head.1", "head.1", 99, teacher.head[-1].in_features, y, negatives=8)
        train(student, x, y, TrainConfig(batch_size=8), teacher=teacher, terms=[LabelTerm(), wrong])


def test_one_step_is_the_formula_with_the_bank_rows_gathered_first() -> None:
    """The term scores each image against the whole bank and picks the drawn rows; computed
    here the way RepDistiller writes it (gather the (B, 1 + K, D) rows, then a batched product),
    the loss, its gradient and the updated banks are the same."""
    torch.manual_seed(0)
    labels = torch.arange(40) % 4
    term = CRDTerm("a", "b", 6, 5, labels, negatives=7, embed_dim=8, seed=3)
    bank_s, bank_t = term.bank_student.clone(), term.bank_teacher.clone()
    student, teacher = torch.randn(10, 6, requires_grad=True), torch.randn(10, 5)
    idx = torch.randperm(40)[:10]
    rows = OtherClassSampler(labels, 7, seed=3)(idx)  # the draws the term's own sampler makes
    step = Step(idx, None, labels[idx], None, None, {"student.a": student, "teacher.b": teacher}, check=True)
    loss = term(step)
    (grad,) = torch.autograd.grad(loss, student)

    s = torch.nn.functional.normalize(term.embed_student(student), dim=1)
    t = torch.nn.functional.normalize(term.embed_teacher(teacher), dim=1)
    for_s = torch.exp(bank_t[rows].bmm(s.unsqueeze(2)).squeeze(2) / 0.07)
    for_t = torch.exp(bank_s[rows].bmm(t.unsqueeze(2)).squeeze(2) / 0.07)
    z_s, z_t = for_s.mean().item() * 40, for_t.mean().item() * 40
    expected = nce_loss(for_s / z_s, 40) + nce_loss(for_t / z_t, 40)
    (expected_grad,) = torch.autograd.grad(expected, student)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)
    new_s = torch.nn.functional.normalize(bank_s[idx] * 0.5 + s.detach() * 0.5, dim=1)
    assert torch.allclose(term.bank_student[idx], new_s, atol=1e-6)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(term.bank_student[untouched], bank_s[untouched])
