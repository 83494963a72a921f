"""Trained models cached on disk, keyed by everything that determines them, verified on load.

A teacher that took minutes to train is saved once and reused by later runs. The file name
carries a hash of the *key* (architecture, training configuration, data source, profile, kdlib
version...), so a changed recipe never finds an old file; the file stores the key itself and a
SHA-256 checksum is written beside it. On load the checksum and the key are compared: a
corrupt, truncated or foreign file is retrained (with a warning), never served.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlib.data import cache_dir
from kdlib.errors import path_error
from kdlib.results import atomic_write_bytes


def key_digest(key: dict[str, Any]) -> str:
    """A short hash of a JSON-serialisable key (order of dict entries does not matter)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_path(name: str, key: dict[str, Any]) -> Path:
    """``$KDLIB_CACHE/checkpoints/<name>_<hash of key>.pt``."""
    return cache_dir() / "checkpoints" / f"{name}_{key_digest(key)}.pt"


def save_checkpoint(path: Path, model: nn.Module, key: dict[str, Any], info: dict[str, Any]) -> None:
    """Write the weights, key and info atomically, then the checksum file beside them. If the
    cache cannot be written (read-only, full disk), warn and go on: the model is still in memory,
    only the next run will have to train it again."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "key": json.dumps(key, sort_keys=True, default=str),
                "info": json.dumps(info)}, buffer)
    data = buffer.getvalue()
    try:
        atomic_write_bytes(path, data)
        atomic_write_bytes(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
    except OSError as exc:
        error = path_error("write", path, "a model checkpoint in the cache", exc,
                           "Set KDLIB_CACHE to a writable folder to keep trained teachers between runs")
        warnings.warn(f"{error}; going on without saving it", stacklevel=2)


def load_checkpoint(path: Path, model: nn.Module, key: dict[str, Any]) -> dict[str, Any] | None:
    """Load ``path`` into ``model`` if it is intact and was made for ``key``; returns its info,
    or ``None`` (with a warning when a file was there but could not be trusted)."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        expected = path.with_suffix(".sha256").read_text().strip()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("its checksum does not match")
        stored = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if stored["key"] != json.dumps(key, sort_keys=True, default=str):
            raise ValueError("it was made for another configuration")
        model.load_state_dict(stored["state_dict"])
        return json.loads(stored["info"])
    except Exception as exc:  # noqa: BLE001 - any damage means: retrain
        warnings.warn(f"ignoring the checkpoint {path}: {exc}; the model is trained again", stacklevel=2)
        return None


def cached_model(name: str, key: dict[str, Any], build: Callable[[], nn.Module],
                 fit: Callable[[nn.Module], dict[str, Any]]) -> tuple[nn.Module, dict[str, Any]]:
    """The model for ``key``: loaded from its verified checkpoint, else built, fitted and saved.

    ``fit(model)`` trains the model in place and returns what to keep with it (e.g. wall time).
    """
    model = build()
    path = checkpoint_path(name, key)
    info = load_checkpoint(path, model, key)
    if info is None:
        info = fit(model)
        save_checkpoint(path, model, key, info)
    return model.eval(), info
