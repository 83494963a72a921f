"""Feature-based knowledge: FitNets hints (Romero et al. 2015) and attention transfer.

The student learns to reproduce, at one of its intermediate stages (the *guided* layer), the
feature maps of one of the teacher's stages (the *hint*), through a learned regressor (a 1x1
convolution, since the two networks have different numbers of channels):

    hint loss = mean over batch, channels and positions of (r(F_student) - F_teacher)^2 .

Feature maps are the outputs of named modules, read with forward hooks: for a
:func:`kdlib.models.cifar_resnet`, a stage is ``"stage1"`` to ``"stage4"`` and
:func:`stage_shapes` gives the shape of each stage's output from one forward pass.
:class:`FitNetsTerm` is the hint as a term of :mod:`kdlib.terms` (``train(..., terms=[...])``):
its regressor is its own (:meth:`FitNetsTerm.parameters`), trained jointly with the
distillation loss, as in later re-implementations (e.g. Tian et al.'s RepDistiller), rather
than in Romero et al.'s two separate stages; ``train`` hooks the two stages and removes the
hooks when it is done. :class:`FeatureTap` is a hook of one's own, removed on leaving a
``with`` block.

Attention transfer (Zagoruyko and Komodakis, 2017), :class:`AttentionTerm` (``"at"``), matches
*where* the two networks look rather than what they compute there: the spatial attention map of
a feature map ``F`` of shape ``(C, H, W)`` is ``A = mean_c F_c**2``, flattened to ``H * W``
values and divided by its L2 norm, and the term is

    AT = (1 / P) * sum over the P pairs of mean over the batch of || A_student - A_teacher ||_2 .

The paper adds ``beta / 2 * sum_j || A_S^j - A_T^j ||_p`` with ``p = 2`` to the loss of an
example; kdlib takes the mean over the pairs instead of their sum (so that the scale does not
grow with their number), so ``weight * AT`` is the paper's term with ``beta = 2 * weight / P``.
The authors' code (and RepDistiller, the benchmark of Tian et al. 2020) uses instead the sum
over the pairs of the mean over batch and positions of the *squared* differences, with weight
``beta = 1000``: ``squared=True`` computes that form. Mean or sum over channels gives the same map after the
normalisation. When the two maps differ in size, the larger attention map is average-pooled to
the smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.models import STAGES
from kdlib.terms import Step, Term, register_term

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


def hint_loss(regressor: nn.Module, guided: Tensor, hint: Tensor) -> Tensor:
    """``mean((regressor(guided) - hint)^2)``, the larger map average-pooled to the
    smaller's size."""
    guided = regressor(guided.float())
    hint = hint.float()
    if guided.shape[-1] > hint.shape[-1]:
        guided = F.adaptive_avg_pool2d(guided, hint.shape[-2:])
    elif hint.shape[-1] > guided.shape[-1]:
        hint = F.adaptive_avg_pool2d(hint, guided.shape[-2:])
    return F.mse_loss(guided, hint)


@register_term("fitnets")
class FitNetsTerm(Term):
    """The FitNets hint as a term: ``mean((regressor(student map) - teacher map)^2)``.

    ``student_layer`` and ``teacher_layer`` name the hooked modules (``named_modules()`` names,
    e.g. ``"stage2"``); the 1x1 convolution ``regressor`` from ``student_channels`` to
    ``teacher_channels`` (:func:`stage_shapes`) is made here, from PyTorch's global random
    generator, and trained with the student (:meth:`parameters`). Train with ``teacher=...``
    (run on each batch).
    """

    def __init__(self, student_layer: str, teacher_layer: str, student_channels: int, teacher_channels: int,
                 weight: float = 1.0) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        super().__init__(weight)
        self.features = (f"student.{student_layer}", f"teacher.{teacher_layer}")
        self.regressor = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.regressor.parameters())

    def __call__(self, step: Step) -> Tensor:
        guided, hint = (step.features[name] for name in self.features)
        return hint_loss(self.regressor.to(guided.device), guided, hint)


def attention_map(features: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """``(N, C, H, W) -> (N, H * W)``: the mean over channels of the squared activations
    (average-pooled to ``size`` if given), flattened, divided by its L2 norm (computed in
    float32 at least)."""
    if features.dim() != 4:
        raise ValueError("attention maps are made from feature maps (batch, channels, "
                         f"height, width), got shape {tuple(features.shape)}")
    energy = features.float().pow(2).mean(dim=1, keepdim=True)
    if size is not None and tuple(energy.shape[-2:]) != tuple(size):
        energy = F.adaptive_avg_pool2d(energy, size)
    return F.normalize(energy.flatten(1), p=2, dim=1)


def attention_transfer_loss(student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor],
                            squared: bool = False) -> Tensor:
    """Mean over the pairs of mean over the batch of ``||A_student - A_teacher||_2`` (the
    module's docstring); with ``squared``, the sum over the pairs of the mean over batch and
    positions of ``(A_student - A_teacher)**2`` (the authors' code). The teacher's maps are
    detached: no gradient reaches the teacher."""
    if len(student_maps) != len(teacher_maps) or not student_maps:
        raise ValueError("attention transfer pairs student and teacher maps: got "
                         f"{len(student_maps)} and {len(teacher_maps)}")
    losses = []
    for s, t in zip(student_maps, teacher_maps):
        if len(s) != len(t):
            raise ValueError("student and teacher maps must have the same batch size, "
                             f"got {len(s)} and {len(t)}")
        size = tuple(min(a, b) for a, b in zip(s.shape[-2:], t.shape[-2:]))
        a_s, a_t = attention_map(s, size), attention_map(t.detach(), size)
        if squared:
            losses.append((a_s - a_t).pow(2).mean())
        else:
            losses.append(torch.linalg.vector_norm(a_s - a_t, dim=1).mean())
    return torch.stack(losses).sum() if squared else torch.stack(losses).mean()


@register_term("at")
class AttentionTerm(Term):
    """Attention transfer: ``pairs`` lists ``(student module, teacher module)`` names (e.g.
    ``("stage1", "stage2")``); the value is :func:`attention_transfer_loss` of
    their outputs (``squared``: the authors' form, used with ``weight=1000``). It has no
    parameters (maps of different channel counts compare directly). Train with ``teacher=...``
    (run on each batch)."""

    def __init__(self, pairs: Sequence[tuple[str, str]], weight: float = 1.0, squared: bool = False) -> None:
        super().__init__(weight)
        self.squared = bool(squared)
        self.pairs = tuple((str(s), str(t)) for s, t in pairs)
        if not self.pairs:
            raise ValueError("attention transfer needs at least one (student module, teacher module) pair")
        self.features = tuple(dict.fromkeys(
            [f"student.{s}" for s, _ in self.pairs] + [f"teacher.{t}" for _, t in self.pairs]))

    def __call__(self, step: Step) -> Tensor:
        return attention_transfer_loss([step.features[f"student.{s}"] for s, _ in self.pairs],
                                       [step.features[f"teacher.{t}"] for _, t in self.pairs], self.squared)
