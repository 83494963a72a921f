"""kdlib.terms: a method is a term of train's loss (a toy term in a few lines, the log of each
term, parameters and end_epoch, feature maps, optimiser and schedule factories), the FitNets and
adversarial terms by both paths, and attention transfer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdlib.methods.adversarial import AdversarialTerm
from kdlib.methods import AttentionTerm, FitNetsTerm, attention_map, attention_transfer_loss
from kdlib.models import cifar_resnet, mlp, seeded
from kdlib.methods import KDTerm, LabelTerm
from kdlib.terms import TERMS, ExtraLossTerm, Step, Term, make_term, register_term
from kdlib.train import TrainConfig, config_terms, predict_logits, train


def toy(n: int = 64, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    return x, (x.flatten(1)[:, 0] > 0).long() + (x.flatten(1)[:, 1] > 1).long()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small() -> nn.Module:
    return seeded(lambda: mlp([8], in_features=16, num_classes=3), 0)


# --- the protocol ----------------------------------------------------------------------------

def test_a_toy_term_is_one_class_and_one_line() -> None:
    @register_term("test-logit-l2")
    class LogitPenalty(Term):
        def __call__(self, step: Step) -> torch.Tensor:
            return step.logits.pow(2).mean()

    x, y = toy()
    model = small()
    log = train(model, x, y, TrainConfig(epochs=2), terms=[LabelTerm(), make_term("test-logit-l2", weight=0.5)])
    assert TERMS["test-logit-l2"] is LogitPenalty and LogitPenalty.name == "test-logit-l2"
    assert [set(epoch) for epoch in log.term_losses] == [{"label", "test-logit-l2"}] * 2
    # the penalty pulls the logits towards 0
    plain = small()
    train(plain, x, y, TrainConfig(epochs=2), terms=[LabelTerm()])
    assert predict_logits(model, x).abs().mean() < predict_logits(plain, x).abs().mean()


def test_the_log_holds_each_terms_mean_and_they_add_up_to_the_loss() -> None:
    x, y = toy()
    soft = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    config = TrainConfig(epochs=2, label_weight=0.3, temperature=2.0)
    log = train(small(), x, y, config, teacher_logits=soft)
    assert list(log.term_losses[0]) == ["kd", "label"]
    for epoch, terms in enumerate(log.term_losses):
        weighted = 0.7 * terms["kd"] + 0.3 * terms["label"]
        assert weighted == pytest.approx(log.epoch_losses[epoch], rel=1e-5)
    # the same two terms given explicitly train the same weights
    a, b = small(), small()
    train(a, x, y, config, teacher_logits=soft)
    train(b, x, y, config, teacher_logits=soft, terms=config_terms(config, distilling=True))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_term_parameters_are_trained_and_end_epoch_is_called_every_epoch() -> None:
    class LearnedMargin(Term):
        name = "margin"

        def __init__(self) -> None:
            super().__init__(1.0)
            self.scale = nn.Parameter(torch.tensor(1.0))
            self.epochs = 0

        def parameters(self) -> list[nn.Parameter]:
            return [self.scale]

        def __call__(self, step: Step) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(self.scale * step.logits, step.labels)

        def end_epoch(self) -> None:
            self.epochs += 1

    x, y = toy()
    term = LearnedMargin()
    seen = []
    train(small(), x, y, TrainConfig(epochs=3), terms=[term], on_epoch=lambda e, m: seen.append(term.epochs))
    assert term.scale.item() != 1.0 and term.epochs == 3
    assert seen == [1, 2, 3]  # end_epoch runs before on_epoch


def test_optimizer_and_scheduler_can_be_passed_in() -> None:
    x, y = toy()
    made = {}

    def adam(params):
        made["params"] = len(params)
        made["optimizer"] = torch.optim.Adam(params, lr=0.01)
        return made["optimizer"]

    def halve_each_step(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)

    model = small()
    train(model, x, y, TrainConfig(epochs=1, batch_size=16), optimizer=adam, scheduler=halve_each_step)
    assert made["params"] == len(list(model.parameters()))
    assert made["optimizer"].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**4)  # stepped after each step


def test_a_feature_only_method_may_use_the_teacher_without_a_kd_term() -> None:
    teacher = seeded(lambda: cifar_resnet((1, 1, 0, 0), width=0.0625), 0)
    student = seeded(lambda: cifar_resnet((1, 0, 0, 0), width=0.0625), 1)
    before = [p.detach().clone() for p in teacher.parameters()]
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(16) % 10
    at = AttentionTerm([("stage1", "stage2")])
    log = train(student, x, y, TrainConfig(batch_size=8), teacher=teacher, terms=[LabelTerm(), at])
    assert set(log.term_losses[0]) == {"label", "at"} and 0 < log.term_losses[0]["at"] <= 2
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert all(p.grad is None for p in teacher.parameters())
    assert not student._forward_hooks and not teacher.stage2._forward_hooks  # train removed its hooks
    assert not any(m._forward_hooks for m in [*student.modules(), *teacher.modules()])


def test_explicit_terms_are_checked() -> None:
    x, y = toy()
    soft = torch.randn(64, 3)
    with pytest.raises(ValueError, match="the terms must include KDTerm"):
        train(small(), x, y, TrainConfig(label_weight=0.5, temperature=4.0), teacher_logits=soft,
              terms=[LabelTerm()])
    with pytest.raises(ValueError, match="not both"):
        train(small(), x, y, TrainConfig(), terms=[LabelTerm()], extra_loss=lambda z, v, t: z.sum())
    with pytest.raises(ValueError, match="terms is empty"):
        train(small(), x, y, TrainConfig(), terms=[])
    with pytest.raises(ValueError, match="ExtraLossTerm"):
        train(small(), x, y, TrainConfig(), terms=[lambda z, v, t: z.sum()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="the KD term needs a teacher"):
        train(small(), x, y, TrainConfig(), terms=[KDTerm()])
    with pytest.raises(ValueError, match="the label term needs labels"):
        train(small(), x, None, TrainConfig(), teacher_logits=soft, terms=[LabelTerm()])
    with pytest.raises(ValueError, match="must return a scalar"):
        train(small(), x, y, TrainConfig(), terms=[ExtraLossTerm(lambda z, v, t: z)])
    model = small()
    with pytest.raises(ValueError, match="pass teacher=..."):
        train(model, x, y, TrainConfig(), teacher_logits=soft, terms=[AttentionTerm([("1", "1")])])
    with pytest.raises(ValueError, match="has no module 'nine'"):
        train(model, x, y, TrainConfig(), teacher=small(), terms=[AttentionTerm([("nine", "1")])])
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        LabelTerm(weight=-1.0)


def test_the_registry_names_its_terms_and_refuses_a_second_class_under_one_name() -> None:
    assert {"label", "kd", "at", "fitnets", "adversarial"} <= set(TERMS)
    assert make_term("kd", weight=0.5, temperature=2.0).temperature == 2.0
    with pytest.raises(ValueError, match="no term named 'nope': registered are"):
        make_term("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_term("kd")(type("OtherKD", (Term,), {}))


# --- FitNets and the adversarial term: the protocol and the older path give the same weights ------

def test_fitnets_as_a_term_trains_the_same_weights_as_the_older_hinted_student() -> None:
    """FitNetsTerm against the frozen copy of the older path (tests/test_train_pinned.py)."""
    from test_train_pinned import HINT_CONFIG, hint_problem, hinted_run

    teacher, student, x, y, channels = hint_problem()
    term = FitNetsTerm("stage2", "stage3", *channels, weight=0.7)
    log = train(student, x, y, HINT_CONFIG, teacher=teacher, terms=[*config_terms(HINT_CONFIG, True), term])
    old, old_regressor = hinted_run()
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), old.state_dict().values()))
    assert torch.equal(term.regressor.weight, old_regressor.weight)
    assert list(log.term_losses[0]) == ["kd", "label", "fitnets"]


def test_the_adversarial_term_gives_the_same_weights_by_both_paths_and_logs_its_epochs() -> None:
    x, y = toy(96)
    soft = 3 * torch.randn(96, 3, generator=torch.Generator().manual_seed(4))
    config = TrainConfig(epochs=2, label_weight=0.5, temperature=4.0)
    old_model, new_model = small(), small()
    old_term = AdversarialTerm(3, weight=0.3, seed=2)
    train(old_model, x, y, config, teacher_logits=soft, extra_loss=old_term)
    new_term = AdversarialTerm(3, weight=0.3, seed=2)
    log = train(new_model, x, y, config, teacher_logits=soft, terms=[*config_terms(config, True), new_term])
    assert all(torch.equal(a, b) for a, b in zip(old_model.parameters(), new_model.parameters()))
    assert len(new_term.history) == 2 and all(0 <= a <= 1 for a in new_term.history)  # train called end_epoch
    assert old_term.history == [] and list(log.term_losses[0]) == ["kd", "label", "adversarial"]


# --- attention transfer ---------------------------------------------------------------------------

def test_attention_transfer_by_hand() -> None:
    # student: two channels whose squares average to [3, 4] -> map [0.6, 0.8]
    student = torch.tensor([[1.0, 2.0], [math.sqrt(5.0), 2.0]]).reshape(1, 2, 1, 2)
    # teacher: one channel whose squares are [4, 3] -> map [0.8, 0.6]
    teacher = torch.tensor([2.0, math.sqrt(3.0)]).reshape(1, 1, 1, 2)
    assert torch.allclose(attention_map(student), torch.tensor([[0.6, 0.8]]))
    expected = math.sqrt(0.2**2 + 0.2**2)
    assert attention_transfer_loss([student], [teacher]).item() == pytest.approx(expected, rel=1e-6)
    # a second example whose maps agree halves the batch mean; a second pair averages over pairs
    batch_s, batch_t = torch.cat([student, teacher.expand(1, 2, 1, 2)]), torch.cat([teacher, teacher])
    assert attention_transfer_loss([batch_s], [batch_t]).item() == pytest.approx(expected / 2, rel=1e-6)
    assert attention_transfer_loss([student, teacher], [teacher, teacher]).item() == pytest.approx(expected / 2,
                                                                                                   rel=1e-6)


def test_attention_transfer_is_zero_for_equal_maps_and_teaches_only_the_student() -> None:
    g = torch.Generator().manual_seed(0)
    same = torch.randn(3, 4, 5, 5, generator=g)
    student = same.clone().requires_grad_(True)
    teacher = (2 * same).clone().requires_grad_(True)  # a multiple: the same normalised map
    loss = attention_transfer_loss([student], [teacher])
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(student.grad).all() and teacher.grad is None
    student = torch.randn(3, 4, 8, 8, generator=g, requires_grad=True)
    teacher = torch.randn(3, 16, 4, 4, generator=g, requires_grad=True)  # more channels, smaller: pooled
    attention_transfer_loss([student], [teacher]).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
    with pytest.raises(ValueError, match="feature maps"):
        attention_map(torch.zeros(2, 3))
