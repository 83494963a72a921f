"""Offline distillation with augmentation: a teacher's logits cached per view of each image
(kdlib.fastnet.view_logits), and a training loop that reads the logits of the view each image
was shown in (kdlib.train with logits of shape (views, N, classes))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlib.fastnet import ViewTransform, apply_views, view_count, view_logits
from kdlib.methods import KDTerm, LabelTerm
from kdlib.terms import Step, Term
from kdlib.train import TrainConfig, train

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_the_view_grid():
    x = torch.randn(4, 3, 8, 8)
    k = 3  # translate 1
    assert view_count(1) == 2 * k * k and view_count(0) == 2
    centre = k * k // 2
    assert torch.equal(apply_views(x, torch.full((4,), centre), 1), x)
    assert torch.equal(apply_views(x, torch.full((4,), centre + k * k), 1), x.flip(-1))
    # view 0 starts one row up and one column left: reflect padding mirrors row and column 1
    shifted = apply_views(x, torch.zeros(4, dtype=torch.long), 1)
    assert torch.equal(shifted[:, :, 1:, 1:], x[:, :, :-1, :-1])
    assert torch.equal(shifted[:, :, 0, 1:], x[:, :, 1, :-1])


def test_view_logits_are_the_teacher_on_each_view():
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = images()
    with torch.no_grad():
        teacher(torch.zeros(1, 3, 8, 8))
    table = view_logits(teacher, x, MEAN, STD, translate=1, batch_size=4, mixed_precision=False)
    assert table.shape == (view_count(1), len(x), 5)
    from kdlib.data import normalize

    for v in (0, 4, 13):
        views = torch.full((len(x),), v)
        with torch.no_grad():
            expected = teacher(apply_views(normalize(x, MEAN, STD), views, 1))
        assert torch.allclose(table[v], expected, atol=1e-6)


class Recorder(Term):
    """Keeps what the loop handed the terms."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.steps: list[Step] = []

    def __call__(self, step: Step) -> torch.Tensor:
        self.steps.append(step)
        return step.logits.sum() * 0


def test_train_reads_the_logits_of_the_view_shown():
    x, y = images(12), torch.arange(12) % 5
    table = torch.randn(view_count(1), 12, 5)
    shown: list[torch.Tensor] = []
    base = ViewTransform(MEAN, STD, 1)

    def transform(batch, generator):
        out, views = base(batch, generator)
        shown.append(views)
        return out, views

    recorder = Recorder()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    train(model, x, y, TrainConfig(epochs=1, batch_size=4), teacher_logits=table, batch_transform=transform,
          terms=[LabelTerm(), recorder])
    for step, views in zip(recorder.steps, shown):
        assert torch.equal(step.teacher_logits, table[views, step.indices])


def test_logits_per_view_need_a_transform_that_names_the_views():
    x, y = images(8), torch.arange(8) % 5
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    config = TrainConfig(epochs=1, batch_size=4)
    plain = lambda batch, g: batch.float() / 255  # noqa: E731
    with pytest.raises(ValueError, match="must return \\(batch, views\\)"):
        train(model, x, y, config, teacher_logits=torch.randn(18, 8, 5), batch_transform=plain,
              terms=[LabelTerm(), KDTerm()])
    with pytest.raises(ValueError, match="not one per view"):
        train(model, x, y, config, teacher_logits=torch.randn(8, 5), batch_transform=ViewTransform(MEAN, STD, 1),
              terms=[LabelTerm(), KDTerm()])
    with pytest.raises(ValueError, match="shape \\(views, 8, classes\\)"):
        train(model, x, y, config, teacher_logits=torch.randn(18, 7, 5), batch_transform=ViewTransform(MEAN, STD, 1),
              terms=[LabelTerm(), KDTerm()])
    with pytest.raises(ValueError, match="holds 2 views"):
        train(model, x, y, config, teacher_logits=torch.randn(2, 8, 5), batch_transform=ViewTransform(MEAN, STD, 1),
              terms=[LabelTerm(), KDTerm()])


def test_a_live_teacher_sees_the_views_cached_logits_would_give():
    """train_fast with the teacher network (run on each batch, as feature terms need) draws the
    same views as with the teacher's cached logits per view, and gives the same student."""
    from kdlib.data import ImageDataset
    from kdlib.fastnet import FastRecipe, fast_cifar_net, train_fast
    from kdlib.models import seeded

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 10
    data = ImageDataset("CIFAR-10", x, y, x[:8], y[:8], tuple("abcdefghij"), MEAN, STD, "synthetic")
    recipe = FastRecipe(epochs=2, batch_size=16, widths=(4, 8, 8), translate=1, whiten_bias_epochs=1,
                        lookahead_start_epochs=1)
    teacher = seeded(lambda: fast_cifar_net(FastRecipe(widths=(8, 8, 8))), 3).eval()
    cached = view_logits(teacher, x, MEAN, STD, translate=1, mixed_precision=False)

    def student(**teaching) -> list[torch.Tensor]:
        terms = [KDTerm(weight=0.5, temperature=4.0), LabelTerm(weight=0.5)]
        model, _ = train_fast(data, recipe, seed=0, terms=terms, mixed_precision=False, **teaching)
        return [p.detach().clone() for p in model.state_dict().values() if p.is_floating_point()]

    live, stored = student(teacher=teacher), student(teacher_logits=cached)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(live, stored))
    moved = student(teacher_logits=cached.roll(1, dims=0))  # logits of other views: another student
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(moved, stored))
    with pytest.raises(ValueError, match="not both"):
        train_fast(data, recipe, teacher=teacher, teacher_logits=cached, mixed_precision=False)
