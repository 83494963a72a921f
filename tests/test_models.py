"""kdlib.models.cifar_resnet: the report's block layouts, strides, widths and bad arguments."""

from __future__ import annotations

import pytest
import torch

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
    assert two_stage[-1].in_features == round(128 * 0.25) * 4
    model = cifar_resnet([1, 1, 1, 1], stride=4, width=0.125).eval()
    first_stage = model[:4](torch.zeros(1, 3, 32, 32))
    assert first_stage.shape[-1] == 8


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
