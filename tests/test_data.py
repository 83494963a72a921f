"""kdlib.data: shapes, types, class counts, normalisation, and clear errors for bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from kdlib import data
from kdlib.data import DataError, ImageDataset, load_mnist, normalize


def test_mnist_shapes_dtypes_counts(mnist: ImageDataset) -> None:
    assert mnist.train_images.shape == (60000, 1, 28, 28)
    assert mnist.test_images.shape == (10000, 1, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_labels.dtype == torch.int64
    assert mnist.class_counts("train") == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert sum(mnist.class_counts("test")) == 10000


def test_mnist_mean_std_match_the_usual_constants(mnist: ImageDataset) -> None:
    pixels = mnist.train_images.float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.3081, abs=5e-5)
    normalized = normalize(mnist.train_images[:20000], mnist.mean, mnist.std)
    assert normalized.dtype == torch.float32
    assert abs(normalized.mean().item()) < 0.01


def test_cifar10_shapes_dtypes_counts(cifar10: ImageDataset) -> None:
    assert cifar10.train_images.shape == (50000, 3, 32, 32)
    assert cifar10.test_images.shape == (10000, 3, 32, 32)
    assert cifar10.train_images.dtype == torch.uint8 and cifar10.test_labels.dtype == torch.int64
    assert cifar10.class_counts("train") == [5000] * 10
    assert cifar10.class_counts("test") == [1000] * 10
    means = (cifar10.train_images[:, :, ::4, ::4].float() / 255).mean((0, 2, 3))
    assert torch.allclose(means, torch.tensor(cifar10.mean), atol=0.01)


def test_cifar10_batch_checksums_match_torchvision() -> None:
    from torchvision.datasets import CIFAR10

    assert dict(CIFAR10.train_list + CIFAR10.test_list) == data.CIFAR10_BATCHES


def test_missing_mnist_says_which_file_where_and_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path) in message
    assert "KDLIB_DATA" in message and "download" in message


def test_missing_cifar10_message(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="(?s)cifar10-jpeg.tgz.*not found.*KDLIB_DATA"):
        data.load_cifar10(tmp_path, download=False)


def copy_mnist(tmp_path: Path) -> Path:
    source = data.mnist_raw_dir(data.data_root())
    if not (source / "train-images-idx3-ubyte").exists():
        pytest.skip("MNIST not found: set KDLIB_DATA to the course's data mirror")
    target = data.mnist_raw_dir(tmp_path)
    shutil.copytree(source, target)
    return target


def test_corrupted_mnist_file_is_rejected(tmp_path: Path) -> None:
    raw = copy_mnist(tmp_path)
    path = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is corrupt or truncated"):
        load_mnist(tmp_path, download=False)


def test_truncated_mnist_file_is_rejected(tmp_path: Path) -> None:
    raw = copy_mnist(tmp_path)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_mnist(tmp_path, download=False)


def test_read_idx_rejects_bad_header_and_truncation(tmp_path: Path) -> None:
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x01\x02\x03\x04" + bytes(10))
    with pytest.raises(DataError, match="magic number"):
        data.read_idx(bad_magic)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + bytes(10))
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(short)


def test_corrupted_cifar_archive_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cifar10-jpeg.tgz").write_bytes(b"not really a tar archive")
    with pytest.raises(DataError, match="cifar10-jpeg.tgz is corrupt or truncated"):
        data.load_cifar10(tmp_path, download=False)


def test_normalize_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        normalize(torch.zeros(2, 1, 4, 4), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="channels"):
        normalize(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), (0.5,), (0.5,))


def test_unknown_dataset_and_split_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("imagenet")
    fake = ImageDataset("x", torch.zeros(1, 1, 1, 1, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64),
                        torch.zeros(1, 1, 1, 1, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64),
                        ("a",), (0.0,), (1.0,), "test")
    with pytest.raises(ValueError, match="unknown split"):
        fake.class_counts("validation")


def test_downloads_default_off_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KDLIB_DOWNLOAD", raising=False)
    monkeypatch.setenv("CI", "true")
    assert not data.downloads_allowed()
    monkeypatch.setenv("KDLIB_DOWNLOAD", "1")
    assert data.downloads_allowed()


def test_display_source_hides_the_machine_paths(monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_DATA", "/srv/mirror/data")
    shown = data.display_source("original MNIST IDX files (md5-verified) from /srv/mirror/data/MNIST/raw")
    assert shown == "original MNIST IDX files (md5-verified) from $KDLIB_DATA/MNIST/raw"


def test_the_subset_helpers_live_in_kdlib_data() -> None:
    from kdlib.data import balanced_subset, first_per_class
    from kdlib.experiments import cifar, mnist

    assert mnist.balanced_subset is balanced_subset and cifar.first_per_class is first_per_class
    labels = torch.arange(30) % 3
    assert torch.bincount(labels[balanced_subset(labels, 9, seed=0)]).tolist() == [3, 3, 3]
    assert first_per_class(labels, 1).tolist() == [0, 1, 2]
