"""A method is a term: the loss :func:`kdlib.train.train` minimises is a weighted sum of terms.

At every step the loop builds a :class:`Step` (the batch's indices, inputs and labels, the
student's logits, the teacher's logits when there is a teacher, and the feature maps the terms
asked for) and adds up ``term.weight * term(step)`` over its terms. Cross-entropy on the labels
(:class:`~kdlib.methods.kd.LabelTerm`) and the distillation term (:class:`~kdlib.methods.kd.KDTerm`)
are terms like any other;
``train`` without ``terms=`` builds them from its :class:`~kdlib.train.TrainConfig`
(:func:`kdlib.train.config_terms`).

A term is a :class:`Term` subclass:

* ``__call__(step)`` returns the term's value, a scalar tensor, before its ``weight``;
* ``parameters()`` lists trainable parameters of its own (a regressor, say): ``train`` hands
  them to the optimiser with the model's. Default: none;
* ``end_epoch()`` is called by ``train`` after every epoch (before ``on_epoch``). Default:
  nothing;
* ``features`` names the feature maps it needs: ``"student.<module>"`` or
  ``"teacher.<module>"``, ``<module>`` a name of ``model.named_modules()`` (for an
  ``nn.Sequential``, the layer's index: ``"student.4"``). ``train`` hooks those modules, gives
  the outputs to the term as ``step.features[name]`` and removes the hooks when it is done; a
  teacher's maps need a teacher run on each batch (``train(..., teacher=...)``);
* ``name`` is its key in :attr:`kdlib.train.TrainLog.term_losses`, set by
  :func:`register_term`, which also enters the class in :data:`TERMS`.

A new method is one class and one line::

    @register_term("logit-l2")
    class LogitPenalty(Term):
        def __call__(self, step):
            return step.logits.pow(2).mean()

    train(model, x, y, config, terms=[LabelTerm(), LogitPenalty(weight=1e-3)])

:data:`TERMS` is the registry, the one place every method is entered. The methods themselves
live one per module in :mod:`kdlib.methods` (``kd``, ``fitnets``, ``attention``, ``crd``,
``adversarial``, ...); importing :mod:`kdlib.methods` (which :mod:`kdlib.train` does) registers
them all, and :func:`make_term` makes one by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from torch import Tensor, nn

ExtraLoss = Callable[[Tensor, "Tensor | None", "Tensor | None"], Tensor]
"""The older form of an extra term (:func:`kdlib.train.train`'s ``extra_loss``): called at every
step with the student's logits, the teacher's logits (``None`` without a teacher) and the
batch's labels (``None`` without labels)."""

ROLES = ("student", "teacher")
"""The networks a term's feature map may come from: the first word of its name."""


@dataclass
class Step:
    """What a term sees at one training step.

    ``indices``: the rows of the training set in the batch; ``inputs``: the batch as the model
    saw it (after ``batch_transform``); ``labels``: their labels (``None`` when training has
    none); ``logits``: the student's, float32, with their graph; ``teacher_logits``: the
    teacher's for the same inputs (``None`` without a teacher), without a graph; ``features``:
    the feature maps the terms asked for, by name (a teacher's without a graph); ``check``:
    true at the first step, where terms check their inputs (later steps trust them: checks that
    read values make the CPU wait for the device).
    """

    indices: Tensor
    inputs: Tensor
    labels: Tensor | None
    logits: Tensor
    teacher_logits: Tensor | None
    features: dict[str, Tensor] = field(default_factory=dict)
    check: bool = False


def check_weight(weight: float) -> float:
    """A term's weight must be a finite number >= 0."""
    w = float(weight)
    if not (w >= 0 and math.isfinite(w)):
        raise ValueError(f"a term's weight must be a finite number >= 0, got {weight!r}")
    return w


def linear_ramp(step: int, warmup_steps: int) -> float:
    """A term's weight factor during a linear warm-up: ``step / warmup_steps`` for the first
    ``warmup_steps`` steps (counted from 1), then 1; always 1 without a warm-up."""
    return min(1.0, step / warmup_steps) if warmup_steps else 1.0


def layer_pairs(pairs, method: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``(student module, teacher module)`` pairs of a method that compares feature maps layer by
    layer, checked (at least one), and the feature maps they name (``term.features``)."""
    checked = tuple((str(s), str(t)) for s, t in pairs)
    if not checked:
        raise ValueError(f"{method} needs at least one (student module, teacher module) pair")
    return checked, tuple(dict.fromkeys([f"student.{s}" for s, _ in checked] + [f"teacher.{t}" for _, t in checked]))


def split_feature(name: str) -> tuple[str, str]:
    """``"student.layer3.0"`` -> ``("student", "layer3.0")``, refusing names of no network."""
    role, _, path = name.partition(".")
    if role not in ROLES or not path:
        raise ValueError(f"a feature map's name is 'student.<module>' or 'teacher.<module>' (a name of "
                         f"model.named_modules(), e.g. 'student.4'), got {name!r}")
    return role, path


class Term:
    """One part of the training loss: ``weight * term(step)``. See the module's docstring."""

    name: ClassVar[str] = "term"
    features: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = check_weight(weight)

    def __call__(self, step: Step) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(step) -> Tensor")

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the term's own, trained with the model's. Default: none."""
        return []

    def end_epoch(self) -> object:
        """Called by :func:`kdlib.train.train` after every epoch. Default: nothing."""
        return None

    def weighted(self, step: Step) -> tuple[Tensor, Tensor]:
        """``(weight * value, value)``: what the term adds to the loss, and its value for the
        log. A weight of 1 multiplies nothing."""
        value = self(step)
        return (value if self.weight == 1.0 else self.weight * value), value

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                             if not k.startswith("_") and isinstance(v, (int, float, str, tuple)))
        return f"{type(self).__name__}({settings})"


TERMS: dict[str, Callable[..., Term]] = {}
"""The registered terms by name: ``TERMS["kd"](weight=0.5, temperature=4.0)`` makes a term."""

T = TypeVar("T", bound=type[Term])


def register_term(name: str) -> Callable[[T], T]:
    """Class decorator: enter a :class:`Term` subclass in :data:`TERMS` as ``name``, which also
    becomes its ``name`` in the training log. Registering a name twice is refused, except for a
    class of the same name and module (a notebook cell run again)."""

    def register(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Term)):
            raise TypeError(f"register_term({name!r}) decorates a subclass of kdlib.terms.Term, got {cls!r}")
        old = TERMS.get(name)
        if old is not None and (getattr(old, "__qualname__", None), getattr(old, "__module__", None)) \
                != (cls.__qualname__, cls.__module__):
            raise ValueError(f"a term named {name!r} is already registered ({old!r}): choose another name")
        cls.name = name
        TERMS[name] = cls
        return cls

    return register


def make_term(name: str, **settings) -> Term:
    """``TERMS[name](**settings)``, with the registered names in the error message."""
    import kdlib.methods  # noqa: F401  (registers every method of the library)
    if name not in TERMS:
        raise ValueError(f"no term named {name!r}: registered are {sorted(TERMS)} (a method of your own "
                         "is registered when the module that defines it is imported)")
    return TERMS[name](**settings)


class ExtraLossTerm(Term):
    """An :data:`ExtraLoss` callable as a term (how ``train``'s ``extra_loss`` joins the loss):
    its value is ``loss(logits, teacher_logits, labels)``, with its own weighting inside."""

    name: ClassVar[str] = "extra"

    def __init__(self, loss: ExtraLoss) -> None:
        super().__init__(1.0)
        self.loss = loss

    def __call__(self, step: Step) -> Tensor:
        return self.loss(step.logits, step.teacher_logits, step.labels)
