"""kdlib.stacked: students trained as one stack take the steps they would take alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kdlib.models import mlp, seeded
from kdlib.stacked import linear_layers, train_stacked
from kdlib.threads import available_cores
from kdlib.train import TrainConfig, train


def data(n: int = 96, classes: int = 10):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    teachers = [3 * torch.randn(n, classes, generator=g) for _ in range(2)]
    return x, y, teachers


BASE = TrainConfig(epochs=2, batch_size=32, lr=0.05, lr_schedule="cosine")
# (config, teacher index or None, labels used): KD at two temperatures and weights, the labels
# alone, and the teacher alone, over two seeds and two teachers
MEMBERS = [(replace(BASE, temperature=2.0, label_weight=0.5, seed=0), 0),
           (replace(BASE, temperature=4.0, label_weight=0.3, seed=1), 1),
           (replace(BASE, seed=0), None),
           (replace(BASE, temperature=3.5, label_weight=0.0, seed=1), 0)]


def alone_and_stacked(members, hidden=(16,), **data_kwargs):
    x, y, teachers = data(**data_kwargs)
    alone, stacked = [], []
    for config, t in members:
        model = seeded(lambda: mlp(list(hidden)), config.seed)
        train(model, x, None if config.label_weight == 0 else y, config,
              teacher_logits=None if t is None else teachers[t])
        alone.append(model)
        stacked.append(seeded(lambda: mlp(list(hidden)), config.seed))
    logs = train_stacked(stacked, x, y, [c for c, _ in members], [None if t is None else teachers[t]
                                                                  for _, t in members])
    return alone, stacked, logs


def largest_gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def test_a_stack_takes_the_steps_each_member_takes_alone() -> None:
    """Six steps of four different members (seeds, teachers, temperatures, label weights, the
    labels alone, the teacher alone): each member's weights match its run alone to float32
    rounding (tolerance 1e-5; an error in the order, the teacher, the loss or the schedule
    moves weights by 1e-3 or more), and so do the losses the logs record."""
    alone, stacked, logs = alone_and_stacked(MEMBERS)
    for config, a, s in zip((c for c, _ in MEMBERS), alone, stacked):
        assert largest_gap(a, s) < 1e-5, config
    assert all(len(log.epoch_losses) == 2 for log in logs)
    assert logs[0].epoch_losses[0] != logs[1].epoch_losses[0]  # each member its own loss


@pytest.mark.parametrize("change", [dict(warmup_epochs=1), dict(label_smoothing=0.1), dict(weight_decay=1e-3),
                                    dict(optimizer="adam", lr=1e-3), dict(momentum=0.0)])
def test_the_shared_schedule_is_the_one_train_uses(change) -> None:
    chosen = [MEMBERS[2], (replace(MEMBERS[2][0], seed=1), None)] if "label_smoothing" in change else MEMBERS[:3]
    members = [(replace(c, **change), t) for c, t in chosen]  # label smoothing: labels alone, as train allows
    alone, stacked, _ = alone_and_stacked(members, hidden=(16, 8), n=70)  # a last batch of 6
    for a, s in zip(alone, stacked):
        assert largest_gap(a, s) < 1e-5, change


def test_a_member_alone_is_not_stacked_with_the_wrong_teacher() -> None:
    """Swapping two members' teachers moves their weights far beyond the tolerance above (the
    test above would see a mix-up)."""
    x, y, teachers = data()
    config = MEMBERS[0][0]
    right, wrong = (seeded(lambda: mlp([16]), 0) for _ in range(2))
    train_stacked([right], x, y, [config], [teachers[0]])
    train_stacked([wrong], x, y, [config], [teachers[1]])
    assert largest_gap(right, wrong) > 1e-3


@pytest.mark.skipif(available_cores() < 2, reason="needs two cores")
def test_one_thread_or_two_give_the_same_bits() -> None:
    """Table 1's rows must not change with the thread count: batched products split over
    threads by matrix, not within one."""
    before = torch.get_num_threads()
    x, y, teachers = data(n=256)
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            models = [seeded(lambda: mlp([64]), c.seed) for c, _ in MEMBERS]
            train_stacked(models, x, y, [c for c, _ in MEMBERS], [None if t is None else teachers[t]
                                                                  for _, t in MEMBERS])
            weights.append(torch.cat([p.flatten() for m in models for p in m.parameters()]))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*weights)


@pytest.mark.parametrize("hidden", [50, 300, 600])
def test_a_student_alone_and_in_a_stack_gets_the_same_bits(hidden: int) -> None:
    """Table 1's rows must not depend on how its students are grouped: a member trained alone (a
    stack of one, which train_stacked runs on one thread) ends with exactly the weights it gets
    in a stack of four, on one thread or two (the table's shapes: 784 inputs, batch 32)."""
    before = torch.get_num_threads()
    x, y, teachers = data(n=320)
    members = [(replace(c, epochs=1), t) for c, t in MEMBERS]

    def weights(models):
        return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models]

    try:
        alone = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            for config, t in members[:2] if threads == 2 else members[2:]:
                model = seeded(lambda: mlp([hidden]), config.seed)
                train_stacked([model], x, y, [config], [None if t is None else teachers[t]])
                alone += weights([model])
            assert torch.get_num_threads() == threads  # restored
        for threads in range(1, min(2, available_cores()) + 1):
            torch.set_num_threads(threads)
            models = [seeded(lambda: mlp([hidden]), c.seed) for c, _ in members]
            train_stacked(models, x, y, [c for c, _ in members], [None if t is None else teachers[t]
                                                                   for _, t in members])
            for config, a, s in zip((c for c, _ in members), alone, weights(models)):
                assert torch.equal(a, s), (threads, config)
    finally:
        torch.set_num_threads(before)


def test_what_cannot_be_stacked_is_refused_with_what_to_do() -> None:
    x, y, teachers = data()
    model = lambda: mlp([16])  # noqa: E731
    with pytest.raises(ValueError, match=r"differ in \['epochs'\]"):
        train_stacked([model(), model()], x, y, [BASE, replace(BASE, epochs=3)], [None, None])
    with pytest.raises(ValueError, match="same layers"):
        train_stacked([model(), mlp([8])], x, y, [BASE, BASE], [None, None])
    with pytest.raises(TypeError, match="Dropout.*without dropout"):
        linear_layers(mlp([16], dropout=0.2))
    with pytest.raises(TypeError, match="plain MLPs"):
        train_stacked([torch.nn.Conv2d(1, 2, 3)], x, y, [BASE], [None])
    with pytest.raises(ValueError, match="no teacher_logits"):
        train_stacked([model()], x, y, [replace(BASE, label_weight=0.5)], [None])
    with pytest.raises(ValueError, match="one row per input"):
        train_stacked([model()], x, y, [replace(BASE, label_weight=0.5)], [teachers[0][:10]])
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\]"):
        train_stacked([model()], x, y + 10, [BASE], [None])
    with pytest.raises(ValueError, match="would ignore them"):
        train_stacked([model()], x, y, [BASE], [teachers[0]])
    with pytest.raises(ValueError, match="label_smoothing applies"):
        train_stacked([model()], x, y, [replace(BASE, label_weight=0.5, label_smoothing=0.1)], [teachers[0]])
    with pytest.raises(ValueError, match="mixed_precision"):
        train_stacked([model()], x, y, [replace(BASE, mixed_precision=True)], [None])
    with pytest.raises(ValueError, match="empty"):
        train_stacked([model()], x[:0], y[:0], [BASE], [None])
    with pytest.raises(ValueError, match="one config"):
        train_stacked([model(), model()], x, y, [BASE], [None])


def test_mnist_stacks_every_planned_run_once_by_shape() -> None:
    from kdlib.experiments import mnist

    runs = mnist.planned_runs((0, 1, 2))
    stacks = mnist.stacked_runs(runs)
    assert sorted(r.row_id() for s in stacks for r in s.runs) == sorted(r.row_id() for r in runs)
    for stack in stacks:
        shapes = {(r.spec.hidden, r.spec.epochs, r.spec.batch_size) for r in stack.runs}
        assert len(shapes) == 1
    assert len(stacks) == 7 and max(len(s.runs) for s in stacks) == 15  # 5 kinds of 300-unit student x 3 seeds
    costs = [mnist.stack_cost(s) for s in stacks]
    assert costs == sorted(costs, reverse=True)


@pytest.mark.skipif(available_cores() < 2, reason="needs two cores")
def test_fidelity_does_not_change_with_the_thread_count() -> None:
    """The KL's mean over 60,000 images, added up by two threads, came out in other last bits
    than on one: Table 1's rows then differed between one process and two."""
    from kdlib.fidelity import fidelity

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(60_000, 10, generator=g), 3 * torch.randn(60_000, 10, generator=g)
    before = torch.get_num_threads()
    try:
        values = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            values.append(fidelity(student, teacher))
    finally:
        torch.set_num_threads(before)
    assert values[0] == values[1]
    log_p, log_q = teacher.double().log_softmax(1), student.double().log_softmax(1)
    assert values[0]["kl"] == pytest.approx((log_p.exp() * (log_p - log_q)).sum(1).mean().item(), rel=1e-6)


def test_the_epoch_callback_sees_each_member_as_train_would_show_it() -> None:
    """``on_epoch`` gets each member after each epoch, with that member's weights of the moment:
    its records match a callback run during the member's training alone (float32 rounding), go
    into that member's history, and a callback that asks to stop is refused."""
    x, y, teachers = data()

    def curve(epoch: int, model: torch.nn.Module) -> dict[str, float]:
        return {"epoch": epoch, "size": model(x).abs().mean().item()}

    alone = []
    for config, t in MEMBERS:
        log = train(seeded(lambda: mlp([16]), config.seed), x, None if config.label_weight == 0 else y, config,
                    teacher_logits=None if t is None else teachers[t], on_epoch=curve)
        alone.append(log.history)
    models = [seeded(lambda: mlp([16]), c.seed) for c, _ in MEMBERS]
    logs = train_stacked(models, x, y, [c for c, _ in MEMBERS],
                         [None if t is None else teachers[t] for _, t in MEMBERS], on_epoch=curve)
    for log, expected in zip(logs, alone):
        assert [p["epoch"] for p in log.history] == [1, 2]
        assert [p["size"] for p in log.history] == pytest.approx([p["size"] for p in expected], abs=1e-5)
        assert log.stack == {"size": len(MEMBERS), "wall_s": pytest.approx(logs[0].stack["wall_s"])}
    assert logs[0].history != logs[1].history
    with pytest.raises(ValueError, match="stop"):
        train_stacked([seeded(lambda: mlp([16]), 0)], x, y, [BASE], [None], on_epoch=lambda e, m: {"stop": True})


def test_a_stack_is_updated_by_one_fused_call_or_falls_back(monkeypatch) -> None:
    """Every stacked tensor sits in a buffer padded to whole vectors (zeros after it), so SGD
    updates all of them with the fused kernel, in one group; a PyTorch without the fused CPU
    kernel (kdlib accepts versions before 2.4) gets the batched update instead of failing."""
    from kdlib import stacked, train as train_module

    buffer, view = stacked.padded_stack([torch.ones(300, 10), torch.ones(300, 10)])
    assert buffer.numel() == 6_000 and view.shape == (2, 300, 10)
    buffer, view = stacked.padded_stack([torch.ones(1, 300)] * 3)
    assert buffer.numel() == 912 and view.shape == (3, 1, 300) and buffer[900:].eq(0).all()
    with_kernel = stacked.stack_optimizer([buffer], BASE)
    assert [group["fused"] for group in with_kernel.param_groups] == [True]
    monkeypatch.setattr(train_module, "fused_sgd_supported", lambda device: False)
    without = stacked.stack_optimizer([buffer], BASE)
    assert [bool(group["fused"]) for group in without.param_groups] == [False]
