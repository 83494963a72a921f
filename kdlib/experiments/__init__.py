"""The course's experiments: one module per table of the report, and a command-line runner.

``python -m kdlib.experiments mnist --profile full`` regenerates ``results/mnist_full.json``.
Result files and the report's own tables live in the repository's ``results/`` folder; when
``kdlib`` is installed without the repository (e.g. on Colab), :func:`published_file` fetches
them from the course repository instead, and checks each against the size and SHA-256 that
``published.json`` (shipped inside the package) records for it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from kdlib import BRANCH, REPOSITORY

REPOSITORY_RAW = REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/" + BRANCH
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
MANIFEST = Path(__file__).with_name("published.json")
PUBLISHED_SUFFIXES = (".json", ".csv")


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as the manifest records them."""
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def published_records(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """Size and checksum of every published file under ``results/``, by relative path."""
    return {path.relative_to(results_dir).as_posix(): file_record(path)
            for path in sorted(results_dir.rglob("*"))
            if path.is_file() and path.suffix in PUBLISHED_SUFFIXES and not path.name.startswith(".")}


def write_manifest() -> Path:
    """Record the published files' sizes and checksums in the package (run after committing new
    results: ``python -m kdlib.experiments manifest``); a test fails while it is out of date."""
    from kdlib.results import atomic_write_json

    atomic_write_json(MANIFEST, published_records())
    return MANIFEST


def manifest() -> dict[str, dict[str, Any]]:
    return json.loads(MANIFEST.read_text())


def published_file(relative: str) -> Path:
    """Path of a file under ``results/`` (e.g. ``"mnist_full.json"``, ``"paper/table1_mnist.csv"``).

    In a checkout it is the repository's own file. Elsewhere it is downloaded from the course
    repository into ``~/.cache/kdlib/results``: to a temporary file first, checked against the
    manifest's size and SHA-256, then renamed into place. A cached copy is checked the same way
    on every call, and a damaged one is downloaded again.
    """
    local = RESULTS_DIR / relative
    if local.exists():
        return local
    expected = manifest().get(relative)
    if expected is None:
        raise FileNotFoundError(f"results/{relative} is not a published file of this kdlib version; "
                                f"published files: {', '.join(sorted(manifest()))}")
    from kdlib.data import cache_dir

    cached = cache_dir() / "results" / relative
    if cached.exists() and file_record(cached) == expected:
        return cached
    url = f"{REPOSITORY_RAW}/results/{relative}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cached.parent, prefix=f".{cached.name}.", suffix=".tmp",
                                     delete=False) as handle:
        partial = Path(handle.name)
    try:
        try:
            urllib.request.urlretrieve(url, partial)  # noqa: S310 - fixed https URL
        except OSError as exc:
            raise FileNotFoundError(
                f"results/{relative} is neither in this checkout ({local}) nor downloadable from {url} "
                f"({exc}); run the experiment's command to create it"
            ) from exc
        got = file_record(partial)
        if got != expected:
            raise FileNotFoundError(
                f"the download of {url} is incomplete or not the published file ({got['bytes']} bytes, "
                f"sha256 {got['sha256'][:12]}..., expected {expected['bytes']} bytes, "
                f"{expected['sha256'][:12]}...): try again, or upgrade kdlib if the course has moved on")
        partial.replace(cached)
    finally:
        partial.unlink(missing_ok=True)
    return cached
