"""Shared fixtures: the data root, and skipping data tests where no copy of the data exists."""

from __future__ import annotations

import pytest

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import torch

from kdlib import data, theory
from kdlib.data import ImageDataset, data_root, load_cifar10, load_mnist, mnist_raw_dir


@pytest.fixture(scope="session")
def mnist() -> ImageDataset:
    if not (mnist_raw_dir(data_root()) / "train-images-idx3-ubyte").exists():
        pytest.skip("MNIST not found: set KDLIB_DATA to the course's data mirror")
    return load_mnist(download=False)


@pytest.fixture(scope="session")
def cifar10() -> ImageDataset:
    root = data_root()
    if not ((root / "cifar-10-batches-py").exists() or (root / "cifar10-jpeg.tgz").exists()):
        pytest.skip("CIFAR-10 not found: set KDLIB_DATA to the course's data mirror")
    return load_cifar10(download=False)


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    """A synthetic MNIST-shaped dataset (600 random images, balanced labels) for the checkers."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (600, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(600) % 10
    return ImageDataset("fake", images, labels, images[:100], labels[:100], tuple("0123456789"),
                        (0.1307,), (0.3081,), "synthetic")


def striped(count: int, shape: tuple[int, int, int], spacing: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` dim noise images of ``shape`` with balanced labels, each image with one bright
    row that marks its class (row ``spacing * label`` of channel ``label % channels``): a
    pattern a tiny network learns in a few steps."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 10
    images = (torch.rand(count, *shape, generator=g) * 60).to(torch.uint8)
    images[torch.arange(count), labels % shape[0], labels * spacing, :] = 255
    return images, labels


@pytest.fixture(scope="session")
def problem_and_losses():
    """A small discrete problem of chapter 3 and the log-loss vectors of random scores."""
    problem = theory.DiscreteProblem.random(num_x=8, num_labels=3, concentration=1.0, seed=0)
    losses = theory.log_loss_vectors(np.random.default_rng(1).normal(size=problem.bayes.shape))
    return problem, losses


def fake_cifar_mirror(tmp_path: Path, monkeypatch, images: list[tuple[str, str, tuple[int, int, int]]]) -> Path:
    """An archive in the course mirror's layout holding one 32x32 JPEG per ``(split, class,
    colour)``, whose checksum stands in for the mirror's; ``KDLIB_CACHE`` points into ``tmp_path``."""
    from PIL import Image

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i, (split, cls, colour) in enumerate(images):
            jpeg = io.BytesIO()
            Image.new("RGB", (32, 32), colour).save(jpeg, format="JPEG")
            info = tarfile.TarInfo(f"cifar10/{split}/{cls}/{i:04d}.jpg")
            info.size = len(jpeg.getvalue())
            tar.addfile(info, io.BytesIO(jpeg.getvalue()))
    archive = tmp_path / "data" / data.CIFAR10_JPEG_ARCHIVE
    archive.parent.mkdir()
    archive.write_bytes(buffer.getvalue())
    monkeypatch.setattr(data, "CIFAR10_JPEG_SHA256", hashlib.sha256(buffer.getvalue()).hexdigest())
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    return archive


@pytest.fixture()
def one_thread():
    """One torch thread for a test (tiny networks run faster so, the pinned constants were
    recorded so, and it is the lightest on a shared machine); the count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
