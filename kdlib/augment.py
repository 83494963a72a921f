"""Data augmentation on whole batches, as tensor operations (no per-image Python).

``random_crop_flip`` does what torchvision's per-image ``RandomCrop(32, padding=4)`` and
``RandomHorizontalFlip()`` do, for a whole uint8 batch at once: pad with zeros, pick one random
offset per image, gather the crops with one advanced-indexing call, and mirror a random half.
``random_shift`` is the same without the mirroring, for digits (Hinton et al.'s "jitter").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.data import normalize


def random_crop_flip(images: Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True,
                     pad_mode: str = "constant") -> Tensor:
    """Random crops (padding ``padding``, zeros by default) and, with ``flip``, horizontal flips
    of a batch ``(N, C, H, W)``."""
    if images.dim() != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n = len(images)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator,
                            device=generator.device).to(images.device)
    mirror = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(images.device) & flip
    return crop_flip(images, offsets[0], offsets[1], mirror, padding, pad_mode)


def crop_flip(images: Tensor, rows_from: Tensor, cols_from: Tensor, mirror: Tensor, padding: int,
              pad_mode: str = "constant") -> Tensor:
    """The crops of a batch ``(N, C, H, W)`` padded by ``padding``: image ``i``'s crop starts at
    row ``rows_from[i]`` and column ``cols_from[i]`` of the padded image (``padding`` is the
    centre), mirrored where ``mirror[i]``; one gather for the whole batch."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding), mode=pad_mode)
    rows = (rows_from[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    across = torch.arange(w, device=images.device)
    across = torch.where(mirror[:, None], w - 1 - across, across)  # a flipped crop reads right to left
    cols = (cols_from[:, None] + across)[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_shift(images: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Shift each image of a float batch by up to ``max_shift`` pixels in each direction, without
    mirroring (a mirrored digit is another symbol). Borders repeat the edge pixels (background)."""
    return random_crop_flip(images, generator, padding=max_shift, flip=False, pad_mode="replicate")


class ImageBatchTransform:
    """uint8 batch -> (augmented) normalised float batch, in ``channels_last`` memory format."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], augment: bool) -> None:
        self.mean, self.std, self.augment = mean, std, augment

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.augment:
            if generator is None:
                raise ValueError("augmentation needs a random generator")
            images = random_crop_flip(images, generator)
        return normalize(images, self.mean, self.std).contiguous(memory_format=torch.channels_last)
