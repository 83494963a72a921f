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
