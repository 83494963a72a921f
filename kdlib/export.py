"""A trained model saved with its preprocessing, usable without kdlib.

A network trained in this course expects *normalised* inputs: pixels scaled to [0, 1], the
dataset's per-channel mean subtracted and divided by its standard deviation. A file of bare weights leaves the user to redo all of that, exactly, before the
numbers mean anything. :func:`save_model` therefore saves a program that takes images as the
dataset stores them (``uint8``, shape ``(N, C, H, W)``, values 0 to 255) and does the rest:

    >>> save_model("student.pt2", student, dataset)        # doctest: +SKIP
    >>> model, info = load_model("student.pt2")            # doctest: +SKIP
    >>> model(raw_images).argmax(1)                        # doctest: +SKIP

The file is PyTorch's own exported-program format (``torch.export.save``): anyone with a
compatible PyTorch (the tests use the version that saved it; the format is not promised to load
across versions) loads it with ``torch.export.load(path).module()``, no kdlib and no model
code needed. Beside the
program it holds ``kdlib.json``: the classes, the mean and standard deviation, the input shape,
the kdlib version and the SHA-256 of the weights, which :func:`load_model` checks.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import kdlib
from kdlib.checkpoints import state_digest
from kdlib.data import ImageDataset
from kdlib.errors import UsageError
from kdlib.results import atomic_write_bytes

METADATA = "kdlib.json"
"""The name of the metadata entry stored beside the exported program."""


class WithPreprocessing(nn.Module):
    """``model`` behind its preprocessing: raw ``uint8`` images in, logits out."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.model((images.float() / 255.0 - self.mean) / self.std)


class SavedModel(nn.Module):
    """A loaded model (:func:`load_model`): checks that its input is what it was saved for
    (``uint8`` images of the saved shape) and says how to fix it when not."""

    def __init__(self, program: nn.Module, info: dict[str, Any]) -> None:
        super().__init__()
        self.program, self.info = program, info

    def forward(self, images: Tensor) -> Tensor:
        shape = tuple(self.info["image_shape"])
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != shape:
            raise UsageError(f"this model takes raw uint8 images of shape (N, {', '.join(map(str, shape))}), "
                             f"pixel values 0-255 (as kdlib.data stores them); got {images.dtype} of shape "
                             f"{tuple(images.shape)}. Pass the images before any normalisation: the model "
                             "normalises them itself")
        return self.program(images)


def has_hooks(model: nn.Module) -> bool:
    """Whether a forward hook (e.g. a :class:`kdlib.features.FeatureTap`) is attached anywhere."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def save_model(path: Path | str, model: nn.Module, dataset: ImageDataset) -> Path:
    """Save ``model`` (a network of kdlib.models, or any that takes image tensors ``(N, C, H, W)``)
    with the preprocessing of ``dataset`` as one file at ``path``; returns the path. ``model``
    is left unchanged: a copy is exported, in eval mode, on the CPU, in float32.

    The file is written atomically (a temporary file, then one rename). Refused: a model with a hook still attached (it would be traced into the program), and a
    model the exporter cannot trace (the error says why).
    """
    if has_hooks(model):
        raise UsageError("the model still has a forward hook attached (a FeatureTap?); remove it first "
                         "(use `with tap(...)`, or call .remove()), or the hook would be saved with the model")
    wrapped = WithPreprocessing(copy.deepcopy(model).cpu().float().eval(), dataset.mean, dataset.std).eval()
    # two sample images, copied: a slice is a view of the whole test set, and the exporter saves
    # the storage of its example inputs (the whole test set: 7.9 MB for MNIST, 30.7 MB for CIFAR-10)
    example = dataset.test_images[:2].cpu().clone()
    try:
        program = torch.export.export(wrapped, (example,), dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
    except Exception as exc:  # the exporter raises many kinds; say which model could not be saved
        raise UsageError(f"torch.export could not trace this model ({type(exc).__name__}: {str(exc)[:300]}); "
                         "save_model saves float models that take image tensors (N, C, H, W) and whose "
                         "forward pass has no data-dependent Python") from exc
    info = {"format": 1, "dataset": dataset.name, "classes": list(dataset.classes), "mean": list(dataset.mean),
            "std": list(dataset.std), "image_shape": list(example.shape[1:]),
            "input": "uint8 images (N, C, H, W), values 0-255", "kdlib": kdlib.__version__,
            "weights_sha256": program_digest(program.module())}
    path = Path(path)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA: json.dumps(info)})
    # one rename: a kill or a full disk leaves the previous file at ``path`` as it was
    atomic_write_bytes(path, buffer.getvalue(), "the saved model", "Pass another path")
    return path


def program_digest(module: nn.Module) -> str:
    """SHA-256 of an exported module's tensors, by name (the order of an exported program's state
    dict is not the model's)."""
    return state_digest(dict(sorted(module.state_dict().items())))


def load_model(path: Path | str) -> tuple[SavedModel, dict[str, Any]]:
    """A model saved by :func:`save_model` and its metadata; the weights' SHA-256 is checked
    against the one recorded when it was saved."""
    extra = {METADATA: ""}
    try:
        program = torch.export.load(Path(path), extra_files=extra)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise UsageError(f"{path} is not a model saved by kdlib.export.save_model "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not extra[METADATA]:
        raise UsageError(f"{path} holds an exported program but no {METADATA}: it was not saved by "
                         "kdlib.export.save_model, so its preprocessing is unknown")
    info = json.loads(extra[METADATA])
    module = program.module()
    if program_digest(module) != info.get("weights_sha256"):
        raise UsageError(f"{path}: the weights do not match the checksum recorded when it was saved "
                         "(the file was changed or damaged); save the model again")
    return SavedModel(module, info), info
