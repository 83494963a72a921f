"""Chapter 8's methods: fake quantization and its straight-through gradient, integer models,
the adversarial term, FitNets hints, and a tiny end-to-end run of the experiment."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch
from test_cifar_experiment import fake_cifar
from test_regimes_toolkit import fake_mnist
from torch import nn

from kdlib.methods.adversarial import AdversarialTerm
from kdlib.experiments import algorithms, cifar
from kdlib.features import stage_shapes, tap
from kdlib.methods import FitNetsTerm
from kdlib.models import cifar_resnet, mlp, stage_channels
from kdlib.quantize import check_bits, fake_quantize, freeze, level_range, model_size_bytes, prepare_qat, to_int8
from kdlib.train import TrainConfig, accuracy, config_terms, train


def separable(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.randn(n, 1, 4, 4, generator=g) * 0.3
    x[:, 0, 0, 0] += 2.0 * (y == 1)
    x[:, 0, 1, 1] += 2.0 * (y == 2)
    return x, y


# --- quantization ----------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fake_quantize_levels_range_and_torch_agreement(bits: int) -> None:
    scale = 0.05
    x = torch.linspace(-1.5, 1.5, 20001) * 2 ** (bits - 1) * scale  # beyond the range on both sides
    y = fake_quantize(x, bits, scale)
    q_min, q_max = level_range(bits, signed=True)
    assert len(torch.unique(y)) == 2**bits  # every level is reached, no more
    assert y.min().item() == pytest.approx(q_min * scale) and y.max().item() == pytest.approx(q_max * scale)
    assert torch.equal(y, torch.fake_quantize_per_tensor_affine(x, scale, 0, q_min, q_max))


def test_straight_through_gradient_is_one_inside_the_range_and_zero_outside() -> None:
    # 4 bits: levels -8..7; x / 0.05 rounds inside them for x in about [-0.425, 0.375]
    x = torch.tensor([-1.0, -0.43, -0.39, 0.0, 0.123, 0.36, 0.38, 1.0], requires_grad=True)
    fake_quantize(x, bits=4, scale=0.05).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    reference = x.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_tensor_affine(reference, 0.05, 0, -8, 7).sum().backward()
    assert torch.equal(x.grad, reference.grad)


def test_unsupported_bits_and_models_are_refused_with_what_is_supported() -> None:
    for bad in (1, 9, 2.5, True, "8"):
        with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
            check_bits(bad)  # type: ignore[arg-type]

    class Untraceable(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow

    with pytest.raises(ValueError, match="cannot quantize Untraceable"):
        prepare_qat(Untraceable(), 8, torch.randn(2, 3))
    four_bit = prepare_qat(mlp([8], in_features=16, num_classes=3), 4, torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="only 8-bit QAT models can become integer models"):
        to_int8(four_bit)


def test_the_integer_model_agrees_with_its_fake_quantized_twin() -> None:
    x, y = separable()
    qat = prepare_qat(mlp([32], in_features=16, num_classes=3), 8, x[:8])
    train(qat, x, y, TrainConfig(epochs=10, lr=0.05, momentum=0.0))
    freeze(qat)
    integer = to_int8(qat)
    assert accuracy(qat, x, y) > 0.95
    with torch.no_grad():
        agree = (qat(x).argmax(1) == integer(x).argmax(1)).float().mean().item()
    assert agree > 0.98
    # int8 weights take a quarter of float32's bytes (plus scales and zero points)
    wide = prepare_qat(mlp([300]), 8, torch.randn(8, 1, 28, 28))
    wide(torch.randn(8, 1, 28, 28))  # the observers see one batch
    assert model_size_bytes(to_int8(wide)) < 0.3 * model_size_bytes(mlp([300]))


# --- adversarial distillation ------------------------------------------------------------------

def test_the_adversarial_term_trains_the_student_and_never_the_teacher() -> None:
    x, y = separable(256)
    teacher = mlp([16], in_features=16, num_classes=3)
    before = [p.detach().clone() for p in teacher.parameters()]
    student = mlp([8], in_features=16, num_classes=3)
    start = [p.detach().clone() for p in student.parameters()]
    term = AdversarialTerm(3, weight=1.0, seed=0)
    train(student, x, y, TrainConfig(epochs=2, label_weight=0.5, temperature=2.0), teacher=teacher,
          extra_loss=term)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert all(p.grad is None for p in teacher.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))
    assert 0.0 <= term.end_epoch() <= 1.0
    with pytest.raises(ValueError, match="needs a teacher and labels"):
        term(torch.zeros(2, 3), None, torch.tensor([0, 1]))


def test_the_discriminator_learns_to_tell_different_distributions_apart() -> None:
    term = AdversarialTerm(3, weight=1.0, temperature=1.0, lr=1e-2, seed=0)
    labels = torch.arange(64) % 3
    teacher = torch.nn.functional.one_hot(labels, 3).float() * 8  # confident and right
    student = torch.zeros(64, 3, requires_grad=True)  # uniform
    for _ in range(100):
        term(student, teacher, labels)
    term.end_epoch()
    assert term.discriminator((teacher / 1.0).softmax(1), labels).min() > 0
    assert term.discriminator(student.softmax(1), labels).max() < 0


# --- FitNets hints ---------------------------------------------------------------------------

CONFIGS = [*{(row.blocks, row.block, row.stride) for row in cifar.TABLE2}, ((3, 4, 6, 3), "bottleneck", 1),
           ((0, 2, 0, 1), "basic", 2), ((1, 0, 0, 0), "bottleneck", 4)]


@pytest.mark.parametrize(("blocks", "block", "stride"), CONFIGS)
def test_every_stage_output_has_the_expected_shape(blocks, block, stride) -> None:
    model = cifar_resnet(blocks, block=block, stride=stride, width=0.125)
    shapes = stage_shapes(model)
    assert list(shapes) == [f"stage{s + 1}" for s, count in enumerate(blocks) if count]  # zero-block stages: none
    side, expansion = 32, 4 if block == "bottleneck" else 1
    for number, count in enumerate(blocks, start=1):
        if count:
            side //= stride if number == 1 else 2
            assert shapes[f"stage{number}"] == (stage_channels(number, 0.125) * expansion, side, side)
    assert model.training  # the forward pass that read the shapes left the model's mode alone
    with pytest.raises(ValueError, match="has no module 'stage9'; its parts are"):
        tap(model, "stage9")


def test_a_tap_in_a_with_block_leaves_nothing_attached() -> None:
    model = cifar_resnet((1, 1, 0, 0), width=0.125).eval()
    with tap(model, "stage2") as stage2, torch.no_grad():
        model(torch.zeros(2, 3, 32, 32))
        assert stage2.output.shape[0] == 2
    assert stage2.output is None and not model.stage2._forward_hooks
    with warnings.catch_warnings():  # torch.jit.script is deprecated, and still what users export with
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model)  # nothing left behind to stop an export


def test_the_hint_loss_trains_student_and_regressor_but_not_the_teacher() -> None:
    teacher = cifar_resnet((1, 1, 1, 1), width=0.125).eval()
    student = cifar_resnet((1, 1, 0, 0), stride=2, width=0.125)
    pairs = algorithms.stage_pairs(student, teacher)
    assert pairs == {"stage1": "stage2", "stage2": "stage3"}  # same resolutions
    term = FitNetsTerm("stage2", "stage3", stage_shapes(student)["stage2"][0], stage_shapes(teacher)["stage3"][0])
    x = torch.randn(8, 3, 32, 32)
    config = TrainConfig(epochs=1, batch_size=4, label_weight=0.5, temperature=4.0)
    before = [p.clone() for p in teacher.parameters()]
    regressor = term.regressor.weight.clone()
    train(student, x, torch.randint(0, 10, (8,)), config, teacher=teacher,
          terms=[*config_terms(config, distilling=True), term])
    assert not torch.equal(regressor, term.regressor.weight)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert not any(m._forward_hooks for m in [*student.modules(), *teacher.modules()])


# --- the experiment, end to end ------------------------------------------------------------------

def test_tiny_algorithms_run_fills_every_table_and_resumes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("kdlib.experiments.regimes.STEPS_TARGET", 20)
    tiny_cifar = dataclasses.replace(cifar.SCALES["quick"], width=0.0625, teacher_epochs=1, reduced_epochs=1,
                                     train_size=100, test_size=50, reduced_per_class=5, batch_size=32)
    tiny = dataclasses.replace(algorithms.SCALES["quick"], mnist_train_size=200, mnist_seeds=(0, 1), bits=(8, 2),
                               adversarial_sizes=(100,), cifar=tiny_cifar, cifar_seeds=(0, 1), qat_epochs=1,
                               timing_repeats=3)
    out = tmp_path / "algorithms.json"
    data = algorithms.run_algorithms("quick", out=out, mnist=fake_mnist(), cifar10=fake_cifar(), scale=tiny,
                                     progress=False)
    table = algorithms.quantization_table(data)
    assert list(table.bits) == ["float", "8", "2"] and (table.seeds == 2).all()
    assert set(algorithms.int8_table(data).dataset) == {"MNIST", "CIFAR-10"}
    assert set(algorithms.method_table(data, "adversarial", 100).method) == {"nokd", "kd", "adversarial"}
    assert set(algorithms.method_table(data, "features").method) == {"nokd", "kd", "fitnets", "at", "crd"}
    curves = algorithms.adversarial_curves(data, 100)
    assert curves.discriminator_accuracy.notna().any()
    rows = dict(data["rows"])
    again = algorithms.run_algorithms("quick", out=out, mnist=fake_mnist(), cifar10=fake_cifar(), scale=tiny,
                                      progress=False)
    assert all(again["rows"][k]["train_wall_s"] == v["train_wall_s"] for k, v in rows.items())  # nothing rerun


def test_chapter_8_checkers_accept_the_reference_and_reject_typical_mistakes() -> None:
    from kdlib.course.checks import check_fake_quantized, check_int8_size, int8_mlp_size_bytes

    assert check_fake_quantized(0.35)
    assert not check_fake_quantized(0.5) and "clamp" in repr(check_fake_quantized(0.5))  # forgot the clamp
    weights = 784 * 300 + 300 * 10
    assert check_int8_size(int8_mlp_size_bytes())
    assert check_int8_size(weights)  # one byte per weight: close enough
    assert not check_int8_size(4 * weights) and "float32" in repr(check_int8_size(4 * weights))


def test_an_uncalibrated_qat_model_is_refused_with_what_to_do() -> None:
    qat = prepare_qat(mlp([16]), 8, torch.zeros(4, 1, 28, 28))
    with pytest.raises(ValueError, match="has not seen any data yet"):
        to_int8(qat)
    qat.train()(torch.randn(8, 1, 28, 28))  # one batch gives the quantizers their ranges
    assert to_int8(qat)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_the_feature_table_reads_the_planned_rows_and_names_a_missing_one() -> None:
    import copy

    from kdlib.experiments import MissingRows

    data = algorithms.load_published()
    table = algorithms.feature_table(data)
    seeds = len(data["provenance"]["scale"]["cifar_seeds"])
    assert list(table.seeds) == [seeds] * (2 + len(algorithms.FEATURE_METHODS))
    broken = copy.deepcopy(data)
    del broken["rows"][algorithms.feature_row_id("crd", 1)]
    with pytest.raises(MissingRows, match=r"cifar/features/crd/seed1.*algorithms --profile full"):
        algorithms.feature_table(broken)


def test_the_quantization_table_names_a_missing_planned_row() -> None:
    import copy

    from kdlib.experiments import MissingRows

    data = algorithms.load_published()
    bits = data["provenance"]["scale"]["bits"]
    table = algorithms.quantization_table(data, "CIFAR-10")
    assert list(table.bits) == ["float", *map(str, bits)]
    broken = copy.deepcopy(data)
    del broken["rows"][algorithms.quantized_row_id("MNIST", "kd", bits[-1], 0)]
    with pytest.raises(MissingRows, match=rf"mnist/quantized/kd/bits{bits[-1]}/seed0"):
        algorithms.quantization_table(broken, "MNIST")


def test_the_fast_net_is_quantized_with_torch_layers_and_its_frozen_weights_stay_frozen() -> None:
    """torch.fx traces through kdlib.fastnet's subclassed convolutions and batch norms; prepare_qat
    swaps them for PyTorch's own (same outputs), so that they fuse and quantize, and keeps the
    whitening filters and the batch norms' fixed scale frozen."""
    from dataclasses import replace as swap

    from kdlib.fastnet import FastRecipe, fast_cifar_net, init_whitening
    from kdlib.quantize import _torch_layers

    torch.manual_seed(0)
    net = fast_cifar_net(swap(FastRecipe(), widths=(8, 16, 16)))
    init_whitening(net, torch.randn(200, 3, 32, 32))
    net(torch.randn(64, 3, 32, 32))  # batch statistics, in train mode
    net.eval()
    x = torch.randn(16, 3, 32, 32)
    plain = _torch_layers(copy.deepcopy(net))
    assert {type(m) for m in plain.modules()} & {type(net.stage1[0]), type(net.stage1[2])} == set()
    assert not plain.training and torch.equal(plain(x), net(x))
    qat = prepare_qat(net, 8, x[:4])
    names = {type(m).__name__ for m in qat.modules()}
    assert {"ConvBn2d", "FusedMovingAvgObsFakeQuantize"} <= names
    frozen = {name for name, p in qat.named_parameters() if not p.requires_grad}
    assert "whiten.0.weight" in frozen and any(name.endswith("bn.weight") for name in frozen)
    trained = {name for name, p in qat.named_parameters() if p.requires_grad}
    assert "head.2.weight" in trained and any(name.startswith("stage1.0") for name in trained)
