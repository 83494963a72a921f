"""kdlib.train and kdlib.models: the loop learns, teacher outputs stay aligned, bad configs fail clearly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from kdlib.models import count_parameters, mlp
from kdlib.train import TrainConfig, accuracy, predict_logits, train


def toy_problem(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :3].sum(1) > 0).long() + (x.flatten(1)[:, 3] > 1).long()
    return x, y


def test_mlp_shapes_and_parameter_counts() -> None:
    teacher, student = mlp([1200, 1200]), mlp([50])
    assert teacher(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(teacher) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    assert count_parameters(student) == 784 * 50 + 50 + 50 * 10 + 10
    with pytest.raises(ValueError, match="hidden"):
        mlp([])
    with pytest.raises(ValueError, match="dropout"):
        mlp([10], dropout=1.0)


def test_training_learns_a_toy_problem() -> None:
    x, y = toy_problem()
    model = mlp([32], in_features=16, num_classes=3)
    before = accuracy(model, x, y)
    log = train(model, x, y, TrainConfig(epochs=20, batch_size=32, lr=0.05))
    assert log.epoch_losses[-1] < log.epoch_losses[0]
    assert accuracy(model, x, y) > max(before, 0.85)


def test_precomputed_teacher_logits_stay_aligned_under_shuffling() -> None:
    x, _ = toy_problem(100)
    teacher = mlp([8], in_features=16, num_classes=3)
    stored = predict_logits(teacher, x, batch_size=7)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(stored[order], teacher.eval()(x[order]), atol=1e-6)


def test_predict_logits_uses_eval_mode_and_restores_it() -> None:
    x, _ = toy_problem(64)
    model = mlp([16], in_features=16, num_classes=3, dropout=0.5)
    model.train()
    first, second = predict_logits(model, x), predict_logits(model, x)
    assert torch.equal(first, second)  # dropout off: deterministic
    assert model.training and not first.requires_grad


def test_distilling_from_the_teacher_alone_copies_it() -> None:
    x, _ = toy_problem()
    teacher = mlp([32], in_features=16, num_classes=3)
    train(teacher, x, toy_problem()[1], TrainConfig(epochs=10, lr=0.05))
    soft = predict_logits(teacher, x)
    student = mlp([32], in_features=16, num_classes=3)
    train(student, x, None, TrainConfig(epochs=20, lr=0.05, label_weight=0.0, temperature=2.0), teacher_logits=soft)
    agreement = (predict_logits(student, x).argmax(1) == soft.argmax(1)).float().mean().item()
    assert agreement > 0.9


def test_same_seed_same_result() -> None:
    x, y = toy_problem(128)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = mlp([8], in_features=16, num_classes=3)
        results.append(train(model, x, y, TrainConfig(epochs=2, seed=5)).epoch_losses)
    assert results[0] == results[1]


def test_bad_configs_and_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig(temperature=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    x, y = toy_problem(64)
    model = mlp([8], in_features=16, num_classes=3)
    with pytest.raises(ValueError, match="64 inputs but 63 labels"):
        train(model, x, y[:-1], TrainConfig())
    with pytest.raises(ValueError, match="rows of teacher logits"):
        train(model, x, y, TrainConfig(label_weight=0.5), teacher_logits=torch.zeros(10, 3))
    with pytest.raises(ValueError, match=r"no teacher \(or teacher_logits\) was given"):
        train(model, x, y, TrainConfig(label_weight=0.5))
    with pytest.raises(ValueError, match="labels are needed"):
        train(model, x, None, TrainConfig(label_weight=0.5), teacher_logits=torch.zeros(64, 3))


def test_label_smoothing_is_cross_entropy_with_the_smoothed_target() -> None:
    from kdlib.losses import softmax_cross_entropy

    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    eps = 0.2
    target = torch.full((6, 4), eps / 4) + (1 - eps) * torch.nn.functional.one_hot(labels, 4)
    assert torch.allclose(softmax_cross_entropy(logits, labels, eps), softmax_cross_entropy(logits, target))
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_warmup_then_cosine_schedule() -> None:
    from kdlib.train import make_optimizer, make_scheduler

    model = mlp([2], in_features=2, num_classes=2)
    config = TrainConfig(epochs=4, lr=1.0, lr_schedule="cosine", warmup_epochs=1)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear warm-up
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.01  # then cosine decay
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=2)


def test_epoch_callback_sees_every_epoch() -> None:
    x, y = toy_problem(64)
    model = mlp([8], in_features=16, num_classes=3)
    log = train(model, x, y, TrainConfig(epochs=3), on_epoch=lambda epoch, m: {"epoch": epoch,
                                                                              "acc": accuracy(m, x, y)})
    assert [h["epoch"] for h in log.history] == [1, 2, 3]


def test_a_teacher_that_label_weight_would_ignore_is_refused() -> None:
    x, y = toy_problem(64)
    soft = torch.randn(64, 3)
    with pytest.raises(ValueError, match="teacher would be ignored"):
        train(mlp([8], in_features=16, num_classes=3), x, y, TrainConfig(label_weight=1.0), teacher_logits=soft)


def test_mlp_rejects_malformed_widths() -> None:
    for bad in (300, [2.5], [0], [True]):
        with pytest.raises(ValueError, match="hidden"):
            mlp(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        mlp([10], num_classes=0)
    with pytest.raises(ValueError, match="input_dropout"):
        mlp([10], input_dropout=1.0)
    assert isinstance(mlp([10], input_dropout=0.2)[1], torch.nn.Dropout)


def test_seeded_models_start_from_the_same_weights() -> None:
    from kdlib.models import seeded

    a, b, c = (seeded(lambda: mlp([8], in_features=4), s) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a[1].weight, c[1].weight)


def test_train_config_refuses_the_old_name_alpha() -> None:
    for make in (lambda: TrainConfig(alpha=0.5), lambda: TrainConfig.from_dict({"alpha": 0.5}),
                 lambda: replace(TrainConfig(), alpha=0.5)):
        with pytest.raises(ValueError, match="no longer takes alpha"):
            make()
    config = TrainConfig(label_weight=0.25)
    assert config.kd_weight == 0.75 and "alpha" not in config.to_dict()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_batched_optimiser_update_matches_pytorchs_per_parameter_loop_bit_for_bit(optimizer) -> None:
    """kdlib's optimisers update all parameters in one batched call (``foreach``): the trained
    weights must be exactly those of PyTorch's per-parameter loop, so that no published result
    changes with it."""
    from kdlib.train import make_optimizer

    x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, optimizer=optimizer, weight_decay=1e-3)

    def trained(make) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = make(model)
        for idx in torch.arange(256).split(32):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach() for p in model.parameters()]

    def per_parameter(model):
        if optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-3, foreach=False)
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                               weight_decay=1e-3, foreach=False)

    assert make_optimizer(nn.Linear(2, 2), config).defaults["foreach"] is True
    for a, b in zip(trained(lambda m: make_optimizer(m, config)), trained(per_parameter)):
        assert torch.equal(a, b)
