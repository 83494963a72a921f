"""MNIST and CIFAR-10 as in-memory tensors, read from a local data root.

Every experiment in the course keeps its whole dataset in memory as ``uint8`` image tensors of
shape ``(N, C, H, W)`` and ``int64`` label tensors, and draws mini-batches by indexing. This is
much faster than a per-sample ``Dataset``/``DataLoader`` pipeline on a CPU (see
``benchmarks/``).

Where the files come from
-------------------------
The data root is the ``KDLIB_DATA`` environment variable, or ``~/.cache/kdlib/data``.

* **MNIST**: torchvision's layout, ``<root>/MNIST/raw/*-ubyte``.
* **CIFAR-10**: torchvision's ``<root>/cifar-10-batches-py`` when present, else the course's
  mirror archive ``<root>/cifar10-jpeg.tgz`` (JPEG quality 75; decoded once and cached in
  ``KDLIB_CACHE``, default ``~/.cache/kdlib``, never in the data root, which may be read-only).

Every file is checked against its published checksum. When a file is missing and downloads are
allowed (``download=True``, or ``KDLIB_DOWNLOAD=1``; on by default outside CI), torchvision
downloads it into the data root (Colab, a laptop with internet). Otherwise a
:class:`DataError` says which file is missing, where it looked, and how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdlib.errors import path_error
from kdlib.results import atomic_write_bytes

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
MNIST_CLASSES = tuple(str(d) for d in range(10))

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tgz"
CIFAR10_JPEG_SHA256 = "43d2d07e2cffba878b118300838fd2617ada99113986ba9cf525412f2e38d90e"
# torchvision's python-pickle batches and their md5 sums (as torchvision.datasets.CIFAR10 lists them)
CIFAR10_BATCHES: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


class DataError(RuntimeError):
    """A dataset file is missing, truncated or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset held in memory.

    Images are ``uint8`` tensors of shape ``(N, C, H, W)``; labels are ``int64`` tensors of
    shape ``(N,)``. ``mean`` and ``std`` are the per-channel normalisation constants for pixels
    scaled to [0, 1]; ``source`` says which copy of the data this is.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    def class_counts(self, split: str = "train") -> list[int]:
        """Number of images of each class in ``split`` (``"train"`` or ``"test"``)."""
        labels = {"train": self.train_labels, "test": self.test_labels}.get(split)
        if labels is None:
            raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
        return torch.bincount(labels, minlength=len(self.classes)).tolist()


def data_root() -> Path:
    """The directory datasets are read from: ``KDLIB_DATA``, or ``~/.cache/kdlib/data``."""
    return Path(os.environ.get("KDLIB_DATA") or Path.home() / ".cache" / "kdlib" / "data").expanduser()


def display_source(source: str) -> str:
    """A dataset's ``source`` for printing on a page: the data root written as ``$KDLIB_DATA``
    and the home folder as ``~``, so that no machine's paths appear in the book."""
    return source.replace(str(data_root()), "$KDLIB_DATA").replace(str(Path.home()), "~")


def cache_dir() -> Path:
    """A writable directory for derived files (decoded arrays): ``KDLIB_CACHE`` or ``~/.cache/kdlib``."""
    return Path(os.environ.get("KDLIB_CACHE") or Path.home() / ".cache" / "kdlib").expanduser()


def downloads_allowed() -> bool:
    """Whether a missing dataset may be downloaded: ``KDLIB_DOWNLOAD``, default on except in CI."""
    default = "0" if os.environ.get("CI") else "1"
    return os.environ.get("KDLIB_DOWNLOAD", default).strip().lower() in {"1", "true", "yes", "on"}


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Scale ``uint8`` images ``(N, C, H, W)`` to [0, 1] and standardise each channel."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"normalize expects uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[1] != len(mean) or len(mean) != len(std):
        raise ValueError(f"{images.shape[1]} channels but {len(mean)} means and {len(std)} stds")
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - m) / s


# --------------------------------------------------------------------------------------------
# Checks shared by both datasets


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str, algorithm: str = "md5") -> None:
    """Raise :class:`DataError` unless ``path`` has the published checksum (and a
    :class:`kdlib.errors.PathError` that names the data root if it cannot be read at all)."""
    try:
        actual = file_digest(path, algorithm)
    except OSError as exc:
        raise path_error("read", path, "a dataset file under the data root", exc,
                         "Point KDLIB_DATA at a readable copy of the data (for this course's mirror: "
                         "export KDLIB_DATA=../shared/data)") from exc
    if actual != expected:
        raise DataError(
            f"{path} is corrupt or truncated: its {algorithm} is {actual}, expected {expected}. "
            "Delete it and copy it again from the mirror (or let torchvision download it)."
        )


def how_to_fix(name: str) -> str:
    return ("Fix it in one of two ways:\n"
            f"  1. point KDLIB_DATA at a directory that holds {name} "
            "(for this course's mirror: export KDLIB_DATA=../shared/data), or\n"
            "  2. allow the download where a network exists: set KDLIB_DOWNLOAD=1 or pass download=True.")


def missing_file_error(name: str, path: Path, dataset: str) -> DataError:
    """The error for a dataset file that is not where it should be."""
    return DataError(f"{dataset}: file {path.name!r} not found at {path}.\n{how_to_fix(name)}")


def download_error(name: str, root: Path, dataset: str, exc: Exception) -> DataError:
    """The error for a download that failed (no network, read-only folder, ...)."""
    return DataError(f"{dataset} is not in {root} and downloading it failed ({exc}).\n{how_to_fix(name)}")


def resolve_download(download: bool | None) -> bool:
    return downloads_allowed() if download is None else download


# --------------------------------------------------------------------------------------------
# MNIST


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` accepted) into a uint8 array of the stated shape."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number); copy it again.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: {len(raw)} bytes, the header promises {expected}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def mnist_raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def download_mnist(root: Path) -> None:
    from torchvision.datasets import MNIST

    MNIST(root=str(root), train=True, download=True)
    MNIST(root=str(root), train=False, download=True)


def load_mnist(root: Path | str | None = None, download: bool | None = None) -> ImageDataset:
    """MNIST as uint8 tensors ``(N, 1, 28, 28)``: 60,000 train and 10,000 test images.

    ``root`` defaults to :func:`data_root`. Each raw file is checked against its md5 sum.
    """
    root = Path(root) if root is not None else data_root()
    raw_dir = mnist_raw_dir(root)
    missing = [raw_dir / name for name in MNIST_FILES if not (raw_dir / name).exists()]
    if missing and resolve_download(download):
        try:
            download_mnist(root)
        except Exception as exc:  # no network, read-only root, ...
            raise download_error("MNIST/raw/*-ubyte", root, "MNIST", exc) from exc
        missing = [p for p in missing if not p.exists()]
    if missing:
        raise missing_file_error("MNIST/raw/*-ubyte", missing[0], "MNIST")
    arrays = {}
    for name, md5 in MNIST_FILES.items():
        verify_checksum(raw_dir / name, md5)
        arrays[name] = read_idx(raw_dir / name)

    def images(name: str) -> torch.Tensor:
        return torch.from_numpy(arrays[name].copy()).unsqueeze(1)

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(arrays[name].astype(np.int64))

    return ImageDataset(
        name="MNIST",
        train_images=images("train-images-idx3-ubyte"),
        train_labels=labels("train-labels-idx1-ubyte"),
        test_images=images("t10k-images-idx3-ubyte"),
        test_labels=labels("t10k-labels-idx1-ubyte"),
        classes=MNIST_CLASSES,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        source=f"original MNIST IDX files (md5-verified) from {raw_dir}",
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10


def read_cifar_batches(batch_dir: Path) -> dict[str, np.ndarray]:
    """Read torchvision's ``cifar-10-batches-py`` pickles (md5-verified) into arrays."""
    parts: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for name, md5 in CIFAR10_BATCHES.items():
        path = batch_dir / name
        if not path.exists():
            raise missing_file_error("cifar-10-batches-py/ (or cifar10-jpeg.tgz)", path, "CIFAR-10")
        verify_checksum(path, md5)
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")  # noqa: S301 - checksum verified above
        split = "test" if name == "test_batch" else "train"
        parts[f"{split}_x"].append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        parts[f"{split}_y"].append(np.asarray(batch["labels"], dtype=np.int64))
    return {key: np.concatenate(value) for key, value in parts.items()}


def decode_cifar_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """Decode the mirror's ``cifar10/{train,test}/<class>/NNNN.jpg`` archive into arrays."""
    from PIL import Image

    images: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    class_index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                             key=lambda m: m.name)
            for member in members:
                _, split, cls, _ = member.name.split("/")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                with Image.open(io.BytesIO(data)) as img:
                    images[split].append(np.asarray(img.convert("RGB"), dtype=np.uint8))
                labels[split].append(class_index[cls])
    except (tarfile.TarError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{archive} could not be decoded ({exc}); copy it again from the mirror.") from exc
    return {
        "train_x": np.stack(images["train"]).transpose(0, 3, 1, 2).copy(),
        "train_y": np.asarray(labels["train"], dtype=np.int64),
        "test_x": np.stack(images["test"]).transpose(0, 3, 1, 2).copy(),
        "test_y": np.asarray(labels["test"], dtype=np.int64),
    }


def load_cifar_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """The mirror archive's arrays, decoded once and cached in :func:`cache_dir`.

    The archive's SHA-256 is checked on every call (a fraction of a second), so the arrays always
    come from a verified archive; the cache file is written atomically with its own SHA-256
    beside it and is used only when that checksum matches; a damaged cache is decoded again. An
    unwritable cache costs the decoding time on the next call, nothing else (a warning says so).
    """
    verify_checksum(archive, CIFAR10_JPEG_SHA256, "sha256")
    cached = cache_dir() / f"cifar10-jpeg-{CIFAR10_JPEG_SHA256[:12]}.npz"
    checksum = cached.with_suffix(".sha256")
    try:
        if cached.exists() and checksum.exists() and file_digest(cached, "sha256") == checksum.read_text().strip():
            with np.load(cached) as npz:
                return {key: npz[key] for key in ("train_x", "train_y", "test_x", "test_y")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # unreadable or damaged: decode the archive again and replace the cache
    arrays = decode_cifar_jpeg_archive(archive)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    try:
        atomic_write_bytes(cached, data)
        atomic_write_bytes(checksum, hashlib.sha256(data).hexdigest().encode())
    except OSError as exc:
        error = path_error("write", cached, "the cache of decoded CIFAR-10 arrays", exc,
                           "Set KDLIB_CACHE to a writable folder to skip the decoding next time")
        warnings.warn(f"{error}; the arrays are kept in memory only", stacklevel=2)
    return arrays


def load_cifar10(root: Path | str | None = None, download: bool | None = None) -> ImageDataset:
    """CIFAR-10 as uint8 tensors ``(N, 3, 32, 32)``: 50,000 train and 10,000 test images.

    Reads torchvision's ``cifar-10-batches-py`` (the original pixels) when present, else the
    course's JPEG mirror archive, else downloads with torchvision if allowed.
    """
    root = Path(root) if root is not None else data_root()
    batch_dir = root / "cifar-10-batches-py"
    archive = root / CIFAR10_JPEG_ARCHIVE
    if not batch_dir.exists() and not archive.exists() and resolve_download(download):
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(root=str(root), train=True, download=True)
        except Exception as exc:
            raise download_error("cifar-10-batches-py/ or cifar10-jpeg.tgz", root, "CIFAR-10", exc) from exc
    if batch_dir.exists():
        arrays = read_cifar_batches(batch_dir)
        source = f"original CIFAR-10 (torchvision's python batches, md5-verified) from {batch_dir}"
    elif archive.exists():
        arrays = load_cifar_jpeg_archive(archive)
        source = (f"the course mirror {archive.name} (sha256-verified on every load): CIFAR-10 re-encoded as "
                  "JPEG quality 75, not the original lossless pixels")
    else:
        raise missing_file_error("cifar-10-batches-py/ or cifar10-jpeg.tgz", archive, "CIFAR-10")
    return ImageDataset(
        name="CIFAR-10",
        train_images=torch.from_numpy(arrays["train_x"]),
        train_labels=torch.from_numpy(arrays["train_y"]),
        test_images=torch.from_numpy(arrays["test_x"]),
        test_labels=torch.from_numpy(arrays["test_y"]),
        classes=CIFAR10_CLASSES,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        source=source,
    )


def load_dataset(name: str, root: Path | str | None = None, download: bool | None = None) -> ImageDataset:
    """Load ``"mnist"`` or ``"cifar10"`` by name."""
    loaders = {"mnist": load_mnist, "cifar10": load_cifar10}
    key = name.lower().replace("-", "")
    if key not in loaders:
        raise ValueError(f"unknown dataset {name!r}: use 'mnist' or 'cifar10'")
    return loaders[key](root, download)
