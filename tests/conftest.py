"""Shared fixtures: the data root, and skipping data tests where no copy of the data exists."""

from __future__ import annotations

import pytest

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
