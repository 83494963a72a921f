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
import zlib
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


CIFAR10_CACHE_FORMAT = 2
"""Version of kdlib's cache of decoded CIFAR-10 arrays; raised whenever the decoding or the file's
layout changes, so that a cache of another version is never found."""
CIFAR10_CACHE_SAMPLE = 16
"""How many images of the cache (chosen afresh at random on every load) are decoded again from
the archive and compared with it, besides every label."""


def jpeg_decoder() -> str:
    """Which JPEG decoder turns the archive into pixels (Pillow and its libjpeg): a cache made by
    another decoder may differ in the last bit of some pixels, so it has another name."""
    import PIL
    from PIL import features

    return f"pillow{PIL.__version__}-libjpeg{features.version('jpg') or 'unknown'}"


def cifar_cache_path() -> Path:
    """The cache of the mirror archive's decoded arrays in :func:`cache_dir`; its name changes
    with the archive's checksum, the decoder and kdlib's cache format."""
    return cache_dir() / (f"cifar10-jpeg-{CIFAR10_JPEG_SHA256[:12]}-{jpeg_decoder()}"
                          f"-format{CIFAR10_CACHE_FORMAT}.npz")


def decode_jpeg(data: bytes) -> np.ndarray:
    """One JPEG image as a uint8 array ``(3, H, W)``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def tar_jpeg_members(tar: bytes) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of every ``.jpg`` file in an uncompressed tar archive, sorted by
    name. The 512-byte headers are read directly (60,000 members in a tenth of a second);
    headers of kinds this reader does not know are left to :mod:`tarfile`."""
    members, pos = [], 0
    while pos + 512 <= len(tar) and tar[pos] != 0:
        header = tar[pos:pos + 512]
        kind = header[156:157]
        if kind not in (b"0", b"\0", b"5"):  # long names, pax headers, links: let tarfile read it
            with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
                return sorted((m.name, m.offset_data, m.size) for m in archive.getmembers()
                              if m.isfile() and m.name.endswith(".jpg"))
        name = header[:100].split(b"\0", 1)[0].decode()
        prefix = header[345:500].split(b"\0", 1)[0].decode() if header[257:262] == b"ustar" else ""
        name = f"{prefix}/{name}" if prefix else name
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        if kind != b"5" and name.endswith(".jpg"):
            members.append((name, pos + 512, size))
        pos += 512 + -(-size // 512) * 512
    return sorted(members)


def split_members(tar: bytes) -> dict[str, list[tuple[int, int, int]]]:
    """The archive's images by split, in the decoded arrays' order: ``(label, offset, size)``
    for each ``cifar10/{train,test}/<class>/NNNN.jpg``."""
    class_index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    splits: dict[str, list[tuple[int, int, int]]] = {"train": [], "test": []}
    for name, offset, size in tar_jpeg_members(tar):
        _, split, cls, _ = name.split("/")
        splits[split].append((class_index[cls], offset, size))
    return splits


def read_cifar_tar(archive: Path) -> bytes:
    """The mirror archive, verified and uncompressed (about 90 MB, a third of a second)."""
    verify_checksum(archive, CIFAR10_JPEG_SHA256, "sha256")
    try:
        return gzip.decompress(archive.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive} could not be decompressed ({exc}); copy it again from the mirror.") from exc


def decode_cifar_jpeg_archive(archive: Path, tar: bytes | None = None) -> dict[str, np.ndarray]:
    """Decode the mirror's ``cifar10/{train,test}/<class>/NNNN.jpg`` archive into arrays."""
    tar = tar if tar is not None else read_cifar_tar(archive)
    arrays: dict[str, np.ndarray] = {}
    try:
        for split, members in split_members(tar).items():
            arrays[f"{split}_x"] = np.stack([decode_jpeg(tar[offset:offset + size]) for _, offset, size in members])
            arrays[f"{split}_y"] = np.asarray([label for label, _, _ in members], dtype=np.int64)
    except (tarfile.TarError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{archive} could not be decoded ({exc}); copy it again from the mirror.") from exc
    return {key: arrays[key] for key in ("train_x", "train_y", "test_x", "test_y")}


def cache_mismatch(arrays: dict[str, np.ndarray], tar: bytes) -> str | None:
    """What differs between cached arrays and the archive they claim to come from (``None``:
    nothing found). Checked: shapes, every label, and :data:`CIFAR10_CACHE_SAMPLE` images chosen
    at random on each call and decoded again. kdlib wrote the cache itself, so a checksum of it
    would only show that the file is what kdlib wrote, not that what kdlib wrote was right."""
    rng = np.random.default_rng()  # fresh entropy: no cache can know which images are checked
    for split, members in split_members(tar).items():
        images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if images.shape != (len(members), 3, 32, 32) or images.dtype != np.uint8 or labels.shape != (len(members),):
            return f"{split} arrays of shape {images.shape} {images.dtype}, the archive has {len(members)} images"
        if not np.array_equal(labels, [label for label, _, _ in members]):
            return f"{int((labels != [m[0] for m in members]).sum())} {split} labels differ from the archive's"
        for i in rng.choice(len(members), size=min(CIFAR10_CACHE_SAMPLE // 2, len(members)), replace=False):
            _, offset, size = members[i]
            if not np.array_equal(images[i], decode_jpeg(tar[offset:offset + size])):
                return f"{split} image {i} differs from the archive's"
    return None


def load_cifar_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """The mirror archive's arrays, decoded once and cached in :func:`cache_dir`.

    The archive's SHA-256 is checked on every call, so the arrays always come from a verified
    archive. The cache is used only when it matches the archive: every label, and images chosen
    at random on every call decoded again (:func:`cache_mismatch`); otherwise the archive is
    decoded again and the cache replaced (atomically). An unwritable cache costs the decoding
    time on the next call, nothing else (a warning says so).
    """
    tar = read_cifar_tar(archive)
    cached = cifar_cache_path()
    problem = None
    try:
        if cached.exists():
            with np.load(cached) as npz:
                arrays = {key: npz[key] for key in ("train_x", "train_y", "test_x", "test_y")}
            problem = cache_mismatch(arrays, tar)
            if problem is None:
                return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"unreadable: {exc}"  # damaged: decode the archive again and replace the cache
    if problem is not None:
        warnings.warn(f"the cache {cached} does not match {archive.name} ({problem}): decoding the archive "
                      "again and replacing the cache", stacklevel=2)
    arrays = decode_cifar_jpeg_archive(archive, tar)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write_bytes(cached, buffer.getvalue(), "the cache of decoded CIFAR-10 arrays",
                           "Set KDLIB_CACHE to a writable folder")
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
        source = (f"the course mirror {archive.name} (sha256-verified on every load; cached arrays checked "
                  f"against it: every label and {CIFAR10_CACHE_SAMPLE} random images): CIFAR-10 re-encoded as "
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


# --- subsets for experiments -------------------------------------------------------------------

def balanced_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of a random subset of ``size`` examples with (as nearly as possible) equal class
    counts, drawn with ``seed``; the whole set (in order) when ``size >= len(labels)``."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if size >= len(labels):
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    classes = int(labels.max()) + 1
    picked = []
    for c in range(classes):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:size // classes]])
    chosen = torch.cat(picked)
    if len(chosen) < size:  # the remainder, at random from the rest
        rest = torch.ones(len(labels), dtype=torch.bool)
        rest[chosen] = False
        others = torch.nonzero(rest).flatten()
        chosen = torch.cat([chosen, others[torch.randperm(len(others), generator=generator)[:size - len(chosen)]]])
    return chosen.sort().values


def first_per_class(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` examples of each class, in the dataset's order."""
    return torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(int(labels.max()) + 1)])
