"""kdlib for a researcher: the mistakes that gave raw PyTorch errors or failed silently now get
kdlib's messages, and the loop reports what a researcher needs (training accuracy, early stop,
explicit scheduler stepping, a collapse warning)."""

from __future__ import annotations

import warnings

import pytest
import torch

from kdlib.methods import FitNetsTerm, KDTerm, LabelTerm
from kdlib.models import mlp, seeded
from kdlib.train import TrainConfig, predict_logits, train


def toy(n: int = 512, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = x[:, :classes].argmax(1)  # learnable labels
    return x, y


def student(classes: int = 4):
    return seeded(lambda: mlp([16], in_features=10, num_classes=classes), 0)


def test_train_accuracy_per_epoch_and_early_stop():
    x, y = toy()
    log = train(student(), x, y, TrainConfig(epochs=5, batch_size=64, lr=0.1),
                on_epoch=lambda epoch, m: {"stop": epoch == 2})
    assert log.stopped_at == 2 and len(log.epoch_losses) == 2 and len(log.train_accuracy) == 2
    assert all(0.0 <= a <= 1.0 for a in log.train_accuracy) and log.train_accuracy[1] > 0.5


def test_an_epoch_milestone_scheduler_stepped_per_epoch():
    x, y = toy()
    lrs = []

    def factory(opt):
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)

    def record(epoch, model):
        lrs.append(opt_holder[0].param_groups[0]["lr"])

    opt_holder = []

    def make_opt(params):
        opt_holder.append(torch.optim.SGD(params, lr=1.0))
        return opt_holder[0]

    train(student(), x, y, TrainConfig(epochs=3, batch_size=64), optimizer=make_opt, scheduler=factory,
          scheduler_per="epoch", on_epoch=record)
    assert lrs == pytest.approx([1.0, 0.1, 0.1])


def test_an_epoch_scheduler_without_scheduler_per_warns():
    x, y = toy()
    with pytest.warns(UserWarning, match="scheduler_per='epoch'"):
        train(student(), x, y, TrainConfig(epochs=1, batch_size=64),
              scheduler=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[8]))
    with pytest.raises(ValueError, match="'step' or 'epoch'"):
        train(student(), x, y, TrainConfig(), scheduler=lambda o: None, scheduler_per="batch")
    with pytest.raises(ValueError, match="applies to a scheduler factory"):
        train(student(), x, y, TrainConfig(), scheduler_per="epoch")


def test_an_optimiser_that_leaves_out_a_terms_parameters_is_refused():
    x = torch.randn(64, 3, 8, 8)
    y = torch.randint(0, 4, (64,))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(256, 4))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(384, 4))
    hint = FitNetsTerm("0", "0", 4, 6)
    with pytest.raises(ValueError, match="leaves out 1 parameter.*FitNetsTerm"):
        train(net, x, y, TrainConfig(), teacher=teacher, terms=[LabelTerm(), KDTerm(), hint],
              optimizer=lambda params: torch.optim.SGD(net.parameters(), lr=0.1))


def test_the_teachers_mode_is_restored():
    x, y = toy()
    teacher = student()
    teacher.train()
    train(student(), x, y, TrainConfig(epochs=1, batch_size=64), teacher=teacher,
          terms=[LabelTerm(), KDTerm(weight=0.5)])
    assert teacher.training


@pytest.mark.parametrize("inputs,match", [
    (torch.randint(0, 255, (32, 10), dtype=torch.uint8), "raw pixels.*normalize"),
    (torch.randn(32, 10, dtype=torch.float64), "float64.*inputs.to"),
])
def test_inputs_the_model_cannot_take_get_a_message(inputs, match):
    with pytest.raises(TypeError, match=match):
        train(student(), inputs, torch.zeros(32, dtype=torch.long), TrainConfig())


def test_channels_last_images_get_a_message():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    with pytest.raises(ValueError, match="channels last.*permute"):
        train(net, torch.randn(8, 32, 32, 3), torch.zeros(8, dtype=torch.long), TrainConfig())


def test_teacher_logits_with_a_graph_point_to_predict_logits():
    x, y = toy()
    teacher = student()
    with pytest.raises(ValueError, match="predict_logits"):
        train(student(), x, y, TrainConfig(label_weight=0.5, temperature=2.0), teacher_logits=teacher(x))
    soft = predict_logits(teacher, x)  # the right way
    train(student(), x, y, TrainConfig(label_weight=0.5, temperature=2.0), teacher_logits=soft)


@pytest.mark.parametrize("bad", [None, "4", "warm", True])
def test_a_temperature_that_is_not_a_number_is_refused(bad):
    with pytest.raises(TypeError, match="temperature must be a number"):
        TrainConfig(temperature=bad)
    with pytest.raises(TypeError, match="temperature must be a number"):
        KDTerm(temperature=bad)


def test_numbers_are_stored_as_numbers():
    import numpy as np

    config = TrainConfig(temperature=np.float32(4), label_weight=1)
    assert type(config.temperature) is float and type(config.label_weight) is float


def test_a_collapsed_student_gives_a_warning_naming_the_terms():
    x, y = toy(n=1024)
    zeros = torch.zeros(1024, 4)
    zeros[:, 0] = 10.0  # a "teacher" that always says class 0, with a weight that drowns the labels
    with pytest.warns(UserWarning, match=r"at chance.*label \(weight 0\.001\).*kd \(weight 1000\)") as caught:
        train(student(), x, y, TrainConfig(epochs=4, batch_size=64, lr=0.5), teacher_logits=zeros,
              terms=[LabelTerm(weight=0.001), KDTerm(weight=1000.0, temperature=1.0)])
    assert sum("at chance" in str(w.message) for w in caught) == 1  # once per run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(student(), x, y, TrainConfig(epochs=3, batch_size=64, lr=0.1))
