"""Feature maps by forward hooks: what feature-based methods read from the two networks.

Feature maps are the outputs of named modules, read with forward hooks: for a
:func:`kdlib.models.cifar_resnet`, a stage is ``"stage1"`` to ``"stage4"`` and
:func:`stage_shapes` gives the shape of each stage's output from one forward pass.
:class:`FeatureTap` is a hook of one's own, removed on leaving a ``with`` block. The methods that
use them (:mod:`kdlib.methods.fitnets`, :mod:`kdlib.methods.attention`) name the maps they need
and :func:`kdlib.train.train` hooks and unhooks them.
"""


from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlib.models import STAGES

class FeatureTap:
    """Keeps the latest output of one module (a forward hook). Use it in a ``with`` block, which
    removes the hook on leaving (a hook left attached would also follow the model into an
    export such as ``torch.jit.script``), or call :meth:`remove`."""

    def __init__(self, module: nn.Module) -> None:
        self.output: Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.output = output

    def remove(self) -> None:
        self._handle.remove()
        self.output = None

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def tap(model: nn.Module, name: str) -> FeatureTap:
    """A :class:`FeatureTap` on ``model``'s module ``name`` (a ``named_modules()`` name, e.g.
    ``"stage2"``), with the modules it does have in the error when there is none."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        known = [n for n, _ in model.named_children()]
        raise ValueError(f"the model has no module {name!r}; its parts are {known}") from None
    return FeatureTap(module)


def stage_names(model: nn.Module) -> list[str]:
    """The stages a :func:`kdlib.models.cifar_resnet` has, in order (zero-block stages are absent)."""
    return [name for name, _ in model.named_children() if name in STAGES]


def stage_shapes(model: nn.Module, size: int = 32) -> dict[str, tuple[int, int, int]]:
    """``{stage: (channels, height, width)}`` of each stage's output for a ``size x size`` RGB
    image, read from one forward pass (in eval mode, without gradients; the model's mode is
    restored)."""
    stages = stage_names(model)
    if not stages:
        raise ValueError("the model has no children named stage1..stage4: stage_shapes reads a "
                         "kdlib.models.cifar_resnet")
    device = next(model.parameters()).device
    was_training = model.training
    taps = [tap(model, name) for name in stages]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
        return {name: tuple(t.output.shape[1:]) for name, t in zip(stages, taps)}
    finally:
        for t in taps:
            t.remove()
        model.train(was_training)
