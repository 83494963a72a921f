"""kdlib.models.cifar_resnet: the report's block layouts, strides, widths and bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlib.models import cifar_resnet, count_parameters


@pytest.mark.parametrize("blocks", [[3, 4, 6, 3], [1, 1, 1, 1], [2, 2, 0, 0], [1, 1, 0, 0]])
def test_block_layouts_give_ten_logits(blocks: list[int]) -> None:
    model = cifar_resnet(blocks, width=0.125).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet50_layout_has_resnet50_size_at_full_width() -> None:
    # ResNet-50 has about 23.5M parameters with a 10-class head
    assert 23.0e6 < count_parameters(cifar_resnet([3, 4, 6, 3])) < 24.0e6
    assert 11.0e6 < count_parameters(cifar_resnet([2, 2, 2, 2], block="basic")) < 11.3e6


def test_zero_block_stages_are_left_out_and_stride_shrinks_the_maps() -> None:
    two_stage = cifar_resnet([2, 2, 0, 0], width=0.25)
    assert [name for name, _ in two_stage.named_children()] == ["stem", "stage1", "stage2", "head"]
    assert two_stage.head[-1].in_features == round(128 * 0.25) * 4
    model = cifar_resnet([1, 1, 1, 1], stride=4, width=0.125).eval()
    first_stage = model.stage1(model.stem(torch.zeros(1, 3, 32, 32)))
    assert first_stage.shape[-1] == 8


def test_named_stages_keep_the_initial_weights_of_the_flat_layout() -> None:
    """Naming the stages changed the parameters' names, not the network: the same seed gives
    the same weights, in the same order, as the flat ``nn.Sequential`` built before."""
    from kdlib.models import Bottleneck

    def flat(blocks, width):  # the layout before named stages, kept here for the comparison
        stem = max(8, round(64 * width))
        layers = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        channels_in = stem
        for stage, count in enumerate(blocks):
            channels = max(4, round(64 * 2**stage * width))
            for i in range(count):
                layers.append(Bottleneck(channels_in, channels, 2 if (i == 0 and stage > 0) else 1))
                channels_in = channels * 4
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels_in, 10))

    for blocks in ([1, 1, 1, 1], [2, 0, 1, 0]):
        torch.manual_seed(3)
        old = list(flat(blocks, 0.125).state_dict().values())
        torch.manual_seed(3)
        new = list(cifar_resnet(blocks, width=0.125).state_dict().values())
        assert len(old) == len(new) and all(torch.equal(a, b) for a, b in zip(old, new))


def test_a_checkpoint_of_the_flat_layout_is_refused_and_retrained(tmp_path, monkeypatch) -> None:
    from kdlib import checkpoints

    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path))
    key = {"model": "tiny"}
    model = cifar_resnet([1, 0, 0, 0], width=0.125)
    flat = nn.Sequential(*[m for part in model.children() for m in part])  # the old names: 0.weight, ...
    path = checkpoints.checkpoint_path("old", key)
    checkpoints.save_checkpoint(path, flat, key, {"trained": "before named stages"})
    fits = []
    with pytest.warns(UserWarning, match="parameter names differ"):
        _, info = checkpoints.cached_model("old", key, lambda: cifar_resnet([1, 0, 0, 0], width=0.125),
                                           lambda m: fits.append(m) or {"trained": "again"})
    assert fits and info == {"trained": "again"}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="4 non-negative counts"):
        cifar_resnet([1, 1, 1])
    with pytest.raises(ValueError, match="at least one block"):
        cifar_resnet([0, 0, 0, 0])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cifar_resnet([1, 1, 1, 1], stride=0)
    with pytest.raises(ValueError, match="'bottleneck' or 'basic'"):
        cifar_resnet([1, 1, 1, 1], block="dense")


def test_batch_crop_flip_matches_per_image_definition() -> None:
    from kdlib.augment import random_crop_flip

    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(0), padding=2)
    g = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 5, (2, 16), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(16):
        crop = padded[i, :, offsets[0, i]:offsets[0, i] + 8, offsets[1, i]:offsets[1, i] + 8]
        if flips[i]:
            crop = crop.flip(-1)
        assert torch.equal(out[i], crop)


def test_an_ensemble_averages_logits_or_softened_probabilities() -> None:
    from kdlib.models import Ensemble, mlp, seeded

    members = [seeded(lambda: mlp([8], in_features=5, num_classes=3), s) for s in (0, 1, 2)]
    x = torch.randn(4, 5)
    outputs = torch.stack([m(x) for m in members])
    assert torch.allclose(Ensemble(members)(x), outputs.mean(0), atol=1e-6)
    t = 4.0
    soft = Ensemble(members, average="probabilities", temperature=t)(x)
    assert torch.allclose((soft / t).softmax(1), (outputs / t).softmax(-1).mean(0), atol=1e-6)
    far = [lambda x: torch.full((1, 3), -1e4).scatter(1, torch.tensor([[0]]), 0.0),
           lambda x: torch.full((1, 3), -1e4).scatter(1, torch.tensor([[1]]), 0.0)]
    extreme = Ensemble([nn.Module() for _ in far], average="probabilities")
    extreme.members[0].forward, extreme.members[1].forward = far  # probabilities that underflow
    assert torch.isfinite(extreme(torch.zeros(1, 5))).all()
    # the members are used without gradients and in eval mode, but not changed in place
    members[0].train()
    ensemble = Ensemble(members)
    assert not ensemble(x).requires_grad
    assert all(p.requires_grad for p in members[0].parameters()) and members[0].training
    wrong = Ensemble([members[0], seeded(lambda: mlp([8], in_features=5, num_classes=4), 0)])
    with pytest.raises(ValueError, match="different shapes.*num_classes"):
        wrong(x)
    with pytest.raises(ValueError, match="'logits' or 'probabilities'"):
        Ensemble(members, average="votes")
