"""Trained models cached on disk, keyed by everything that determines them, verified on load.

A teacher that took minutes (or hours) to train is saved once and reused by later runs. The file
name carries a hash of the *key* (architecture, training configuration, data source, profile,
kdlib version...), so a changed recipe never finds an old file; the file stores the key itself.

One file holds everything: a first line ``kdlib-checkpoint 1 <sha256>`` with the SHA-256 of the
rest, then the ``torch.save`` payload (weights, key, info). It is written by one atomic rename
(:func:`kdlib.results.atomic_write_bytes`), so a load during a save reads either the old file or
the new one, whole, and two runs saving at once leave one consistent file: weights and checksum
can never disagree. On load the checksum and the key are compared: a corrupt, truncated or
foreign file is retrained (with a warning), never served, and so is a file whose parameter
names are not the model's (a network whose layout changed, e.g. when ``cifar_resnet`` got named
stages): such a file is refused before anything is loaded. Files of older kdlib versions (the
payload alone, its checksum in a ``.sha256`` file beside it) are still read.
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
from kdlib.errors import UsageError, path_error
from kdlib.results import ResultFile, atomic_write_bytes

MAGIC = b"kdlib-checkpoint 1 "
"""The start of a checkpoint file; the SHA-256 of the payload (64 hex digits) and a newline follow."""
HEADER_BYTES = len(MAGIC) + 64 + 1


def key_digest(key: dict[str, Any]) -> str:
    """A short hash of a JSON-serialisable key (order of dict entries does not matter)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_path(name: str, key: dict[str, Any]) -> Path:
    """``$KDLIB_CACHE/checkpoints/<name>_<hash of key>.pt``."""
    return cache_dir() / "checkpoints" / f"{name}_{key_digest(key)}.pt"


def encode_checkpoint(model: nn.Module, key: dict[str, Any], info: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file: the header line with the payload's checksum, then the payload."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "key": json.dumps(key, sort_keys=True, default=str),
                "info": json.dumps(info)}, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def verified_payload(path: Path, data: bytes) -> bytes:
    """The payload of the checkpoint file ``path`` (content ``data``), after checking its checksum
    (``ValueError`` if it does not match)."""
    if data.startswith(MAGIC):
        expected, payload = data[len(MAGIC):HEADER_BYTES - 1].decode("ascii", "replace"), data[HEADER_BYTES:]
    else:  # an older kdlib's file: the checksum is in <name>.sha256
        expected, payload = path.with_suffix(".sha256").read_text().strip(), data
    if hashlib.sha256(payload).hexdigest() != expected:
        raise ValueError("its checksum does not match")
    return payload


def save_checkpoint(path: Path, model: nn.Module, key: dict[str, Any], info: dict[str, Any]) -> None:
    """Write the weights, key, info and their checksum in one atomic step. If the cache cannot be
    written (read-only, full disk), warn and go on: the model is still in memory, only the next
    run will have to train it again."""
    try:
        atomic_write_bytes(path, encode_checkpoint(model, key, info), "a model checkpoint in the cache",
                           "Set KDLIB_CACHE to a writable folder")
        path.with_suffix(".sha256").unlink(missing_ok=True)  # an older kdlib's checksum file, now stale
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
        payload = verified_payload(path, path.read_bytes())
        stored = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if stored["key"] != json.dumps(key, sort_keys=True, default=str):
            raise ValueError("it was made for another configuration")
        names, expected = set(stored["state_dict"]), set(model.state_dict())
        if names != expected:  # checked before loading anything: a model is never half loaded
            raise ValueError(f"its parameter names differ from the model's (saved from another layout of the "
                             f"network, e.g. {sorted(names - expected)[:2]} instead of "
                             f"{sorted(expected - names)[:2]})")
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


def weights_digest(model: nn.Module) -> str:
    """A short SHA-256 of a model's weights (every tensor of its state dict: name, dtype, shape and
    bytes): equal exactly when the weights are bit for bit the same."""
    return state_digest(model.state_dict())


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """:func:`weights_digest` of a state dict, in its order."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def record_teacher(results: ResultFile, row_id: str, model: nn.Module, make_row: Callable[[], dict[str, Any]],
                   measure: tuple[str, float] | None = None) -> None:
    """Record the teacher ``model`` as the row ``row_id`` of ``results`` (``make_row()`` gives its
    fields; the digest of its weights is added), or, when the file already has that row, check
    that ``model`` is the teacher its students were trained with.

    A resumed run whose teacher's checkpoint is gone (another machine, a cleared cache) trains
    the teacher again, and a retrained network is not the same network on another machine's
    kernels: students of two teachers would then be compared as if they shared one. The check
    compares the weights' digest; for a row written before kdlib recorded digests it compares
    the measurement ``measure = (field, tolerance)`` instead (e.g. ``("accuracy", 5e-4)``: the
    same weights can move a few test images on other kernels, a retrained teacher moves many).
    Raises :class:`kdlib.errors.UsageError` when they differ."""
    digest = weights_digest(model)
    if not results.has(row_id):
        results.put(row_id, {**make_row(), "weights_sha256": digest})
        return
    stored = results.get(row_id)
    if "weights_sha256" in stored:
        same, what = stored["weights_sha256"] == digest, f"weights digest {stored['weights_sha256']}"
        now = f"weights digest {digest}"
    elif measure is not None and measure[0] in stored:
        field, tolerance = measure
        value = make_row()[field]
        same, what, now = abs(value - stored[field]) <= tolerance, f"{field} {stored[field]}", f"{field} {value}"
    else:
        return  # an older row with nothing to compare
    if not same:
        raise UsageError(
            f"{results.path}: its rows were made with a teacher ({row_id!r}, {what}) that is not the one "
            f"in hand ({now}; trained again because its checkpoint was not in the cache, or trained on "
            "another machine). Students of two teachers cannot be paired. Put the teacher's checkpoint "
            "back in KDLIB_CACHE, or pass a new --out to run the experiment afresh.")
