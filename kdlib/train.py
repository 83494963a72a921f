"""One training loop for ordinary training, offline distillation and any method written as terms.

The whole training set is a tensor in memory; each step draws a mini-batch by indexing it with a
slice of a random permutation, so there is no per-sample Python. In offline distillation the
teacher's logits are computed once, before training, as a tensor ``teacher_logits`` whose row
``i`` belongs to training example ``i``; the loop indexes inputs, labels and teacher logits with
the *same* index tensor, so shuffling can never misalign them.

The loss is a weighted sum of terms (:mod:`kdlib.terms`): the cross-entropy on the labels, the
distillation term, and whatever a method adds (a hint, an attention map, a discriminator).
Without ``terms=``, :func:`train` builds them from its :class:`TrainConfig`
(:func:`config_terms`) and its ``extra_loss``, and trains exactly the weights it trained before
terms existed (``tests/test_train_pinned.py`` checks this bit for bit).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from kdlib.features import FeatureTap
from kdlib.losses import check_label_smoothing, check_label_weight, check_temperature, refuse_alpha
from kdlib.methods import KDTerm, LabelTerm
from kdlib.models import constrained_modules
from kdlib.terms import ExtraLoss, ExtraLossTerm, Step, Term, split_feature

__all__ = ["BatchTransform", "EpochCallback", "ExtraLoss", "OptimizerFactory", "SchedulerFactory", "TrainConfig",
           "TrainLog", "accuracy", "config_terms", "fused_sgd_supported", "make_optimizer", "make_scheduler", "predict_logits", "train"]

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]
"""Turns a stored batch (e.g. uint8 images) into network input (e.g. augmented, normalised floats)."""

EpochCallback = Callable[[int, nn.Module], dict[str, float] | None]
"""Called after each epoch with the epoch number (1-based) and the model; what it returns is kept
in :attr:`TrainLog.history`. Returning a dict with ``"stop": True`` ends training after that
epoch (early stopping; :attr:`TrainLog.stopped_at` records the epoch)."""

OptimizerFactory = Callable[[list[Tensor]], torch.optim.Optimizer]
"""Makes the optimiser from the parameters to train (the model's, then the terms')."""

SchedulerFactory = Callable[[torch.optim.Optimizer], "torch.optim.lr_scheduler.LRScheduler | None"]
"""Makes the learning-rate schedule of an optimiser; ``train`` steps it after every optimiser step
(``scheduler_per="step"``, the default) or after every epoch (``scheduler_per="epoch"``, for
schedules written in epochs such as ``MultiStepLR(milestones=[30, 60])``)."""

SCHEDULER_PER = ("step", "epoch")
EPOCH_SCHEDULERS = ("StepLR", "MultiStepLR", "ExponentialLR", "ReduceLROnPlateau", "CosineAnnealingWarmRestarts")
"""Schedules usually written in epochs: given without ``scheduler_per``, ``train`` warns that it
steps them after every step."""

COLLAPSE_MIN_EXAMPLES = 200
"""Fewer training examples than this cannot tell a collapse from bad luck: no warning."""

DIVERGENCE_FACTOR = 10.0
"""An epoch whose mean loss exceeds the first epoch's by this factor triggers a divergence warning."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    ``label_weight`` is the weight of the hard-label loss: 1 trains on the labels alone (no
    teacher needed), 0 on the teacher alone, in between mixes the two and the distillation term
    gets ``kd_weight = 1 - label_weight`` (:func:`kdlib.losses.distillation_loss`). Its old name
    ``alpha`` is refused with a message that says what changed.
    """

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_epochs: int = 0  # linear learning-rate warm-up before the schedule
    temperature: float = 1.0
    label_weight: float = 1.0  # weight of the hard-label loss; the KD term gets 1 - label_weight
    label_smoothing: float = 0.0  # for training on labels alone: target (1 - eps) e_y + eps / C
    seed: int = 0
    mixed_precision: bool = False  # bfloat16 autocast
    alpha: InitVar[float | None] = None  # the old name of label_weight: refused

    def __post_init__(self, alpha: float | None) -> None:
        refuse_alpha(alpha)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs} "
                             f"with epochs={self.epochs}")
        # stored as the numbers they were checked to be (never, say, the string "4")
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "label_weight", check_label_weight(self.label_weight))
        object.__setattr__(self, "label_smoothing", check_label_smoothing(self.label_smoothing))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict, rejecting unknown keys with the list of known ones."""
        refuse_alpha(values.get("alpha"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}: known keys are {sorted(known)}")
        return cls(**values)

    @property
    def kd_weight(self) -> float:
        """The weight of the distillation term, ``1 - label_weight``."""
        return 1.0 - self.label_weight

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainLog:
    """What a training run measured: wall time, throughput, the mean loss of each epoch, the mean
    value of each term in each epoch (before its weight, by the term's name: ``term_losses[0]
    ["kd"]``), the training accuracy of each epoch and what the epoch callback (if any) returned
    after each epoch."""

    wall_s: float
    samples_per_s: float
    epoch_losses: list[float]
    history: list[dict[str, float]] = field(default_factory=list)
    term_losses: list[dict[str, float]] = field(default_factory=list)
    train_accuracy: list[float | None] = field(default_factory=list)
    """Per epoch, the fraction of training examples the model classified right *as it trained*
    (on the batches as transformed, before each step's update); ``None`` without labels."""
    stopped_at: int | None = None
    """The epoch after which the epoch callback stopped training (``None``: it ran every epoch)."""
    stack: dict[str, float] | None = None
    """For a model trained in a stack (:func:`kdlib.stacked.train_stacked`): the stack's
    ``size`` (its number of members) and its own ``wall_s``; ``None`` otherwise."""


def train(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None,
    config: TrainConfig,
    teacher_logits: Tensor | None = None,
    batch_transform: BatchTransform | None = None,
    progress: bool = False,
    teacher: nn.Module | None = None,
    on_epoch: EpochCallback | None = None,
    extra_loss: ExtraLoss | None = None,
    *,
    terms: Sequence[Term] | None = None,
    optimizer: OptimizerFactory | None = None,
    scheduler: SchedulerFactory | None = None,
    scheduler_per: str | None = None,
) -> TrainLog:
    """Train ``model`` in place on ``(inputs, labels)``, distilling from a teacher if one is given.

    * no teacher: ordinary training with the softmax cross-entropy (``label_weight`` must then be 1);
    * ``teacher_logits``: precomputed logits of a frozen teacher, row ``i`` for ``inputs[i]``
      (offline distillation without data augmentation);
    * ``teacher_logits`` of shape ``(views, N, C)``: a frozen teacher's logits on each of a fixed
      set of augmented views of every input (offline distillation *with* augmentation, e.g.
      :func:`kdlib.fastnet.view_logits`); ``batch_transform`` then returns ``(batch, views)``,
      the view it chose for each image, and the step's teacher logits are ``[views, idx]``;
    * ``teacher``: a frozen teacher run in eval mode, without gradients, on each transformed
      batch (needed when ``batch_transform`` augments the data, so that teacher and student see
      the same augmented images, and for terms that read the teacher's feature maps).

    The loss is the sum of ``term.weight * term(step)`` over ``terms`` (:mod:`kdlib.terms`); their
    own parameters are trained with the model's, their ``end_epoch()`` is called after every
    epoch. Without ``terms`` they are :func:`config_terms`: with a teacher, the distillation loss
    with ``config.temperature`` and ``config.label_weight`` (``labels`` may be ``None`` when
    ``label_weight == 0``), and ``extra_loss(logits, teacher_logits, labels)``, if given, is
    added at every step. With ``terms``, any term may use the teacher (a method with no KD term
    is allowed); ``config``'s loss settings, unless left at their defaults, must then be among
    the terms (``[*config_terms(config, distilling=True), MyTerm()]``), so that the config
    recorded with a result says what was trained.

    ``optimizer(params)`` and ``scheduler(optimizer)``, if given, replace
    :func:`make_optimizer` and :func:`make_scheduler`. The optimiser must train every parameter
    in ``params`` (a term's own, such as a FitNets regressor, included). The schedule is stepped
    after every optimiser step (``scheduler_per="step"``, the default) or after every epoch
    (``scheduler_per="epoch"``).

    Layers with a constraint (``constrain_()``, e.g. :class:`kdlib.models.MaxNormLinear`) are
    projected onto it after every optimiser step.

    The teacher's train/eval mode is restored when training ends. Each epoch's training
    accuracy is recorded; after the first epoch, an epoch whose training accuracy is no better
    than chance gives a warning naming the terms and their weights (a weight that drowns the
    labels, say). ``on_epoch`` may stop training early by returning ``{"stop": True}``.

    The inputs of the loss are checked on the first step only (checks that read values force the
    CPU to wait for the device); after that, each epoch's mean loss is checked: a non-finite loss
    stops training with an error, a loss that grows tenfold gives a warning.
    """
    terms = resolve_terms(inputs, labels, config, teacher_logits, teacher, extra_loss, terms)
    check_inputs(model, inputs, batch_transform)
    check_scheduler_per(scheduler, scheduler_per)
    teacher_was_training = teacher.training if teacher is not None else False
    if teacher is not None:
        teacher.eval()
    try:
        return _train(model, inputs, labels, config, teacher_logits, batch_transform, progress, teacher, on_epoch,
                      terms, optimizer, scheduler, scheduler_per)
    finally:
        if teacher is not None:
            teacher.train(teacher_was_training)


def _train(model: nn.Module, inputs: Tensor, labels: Tensor | None, config: TrainConfig,
           teacher_logits: Tensor | None, batch_transform: BatchTransform | None, progress: bool,
           teacher: nn.Module | None, on_epoch: EpochCallback | None, terms: list[Term],
           optimizer: OptimizerFactory | None, scheduler: SchedulerFactory | None,
           scheduler_per: str | None) -> TrainLog:
    """The loop of :func:`train`, its arguments checked."""
    per, per_given = scheduler_per or "step", scheduler_per is not None
    torch.manual_seed(config.seed)
    # random numbers (order, augmentation) are drawn where the data live: no copies per step
    generator = torch.Generator(device=inputs.device).manual_seed(config.seed)
    params = trainable_parameters(model, terms)
    constrained = constrained_modules(model)
    opt = optimizer(params) if optimizer is not None else make_optimizer(params, config)
    check_optimizer_covers(opt, params, terms)
    steps_per_epoch = -(-len(inputs) // config.batch_size)
    schedule = scheduler(opt) if scheduler is not None else make_scheduler(opt, config, steps_per_epoch)
    if scheduler is not None:
        warn_about_epoch_scheduler(schedule, per_given)
    model.train()
    log, names = TrainLog(wall_s=0.0, samples_per_s=0.0, epoch_losses=[]), term_names(terms)
    first_step, warned_collapse = True, False
    start = time.perf_counter()
    with FeatureMaps(model, teacher, terms) as maps:
        for epoch in range(config.epochs):
            order = torch.randperm(len(inputs), generator=generator, device=inputs.device)
            total, count = torch.zeros((), device=inputs.device), 0
            correct = torch.zeros((), device=inputs.device, dtype=torch.long)
            term_totals = torch.zeros(len(terms), device=inputs.device)
            for idx in tqdm(order.split(config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}",
                            disable=not progress, leave=False):
                x, views = inputs[idx], None
                if batch_transform is not None:
                    x = batch_transform(x, generator)
                    if isinstance(x, tuple):  # (batch, the view of each image): see train's docstring
                        x, views = x
                soft = None
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
                    logits = model(x).float()
                    if teacher is not None:
                        with torch.inference_mode():
                            soft = teacher(x).float()
                        soft = soft.clone()  # an inference tensor cannot be saved for backward
                    elif teacher_logits is not None:
                        if first_step:
                            check_views(teacher_logits, views)
                        soft = teacher_logits[idx] if views is None else teacher_logits[views, idx].float()
                step = Step(idx, x, None if labels is None else labels[idx], logits, soft, maps.read(),
                            check=first_step)
                loss, values = weigh(terms, step)
                first_step = False
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for module in constrained:  # e.g. max-norm: a projection after each step
                    module.constrain_()
                if schedule is not None and per == "step":
                    schedule.step()
                if step.labels is not None:
                    correct += (logits.detach().argmax(dim=1) == step.labels).sum()
                total += loss.detach() * len(idx)
                term_totals += values * len(idx)
                count += len(idx)
            log.epoch_losses.append(check_epoch_loss(total.item() / count, epoch + 1, log.epoch_losses, config,
                                                     steps_per_epoch))
            log.term_losses.append(dict(zip(names, (v / count for v in term_totals.tolist()))))
            log.train_accuracy.append(correct.item() / count if labels is not None else None)
            if epoch >= 1 and not warned_collapse:  # once per run: the first collapsed epoch
                warned_collapse = warn_if_collapsed(log.train_accuracy[-1], logits.shape[1], count, epoch + 1,
                                                    terms, names)
            if schedule is not None and per == "epoch":
                schedule.step()
            for term in terms:
                term.end_epoch()
            if on_epoch is not None:
                returned = on_epoch(epoch + 1, model) or {}
                log.history.append(returned)
                model.train()
                if isinstance(returned, dict) and returned.get("stop"):
                    log.stopped_at = epoch + 1
                    break
    log.wall_s = time.perf_counter() - start
    log.samples_per_s = len(log.epoch_losses) * len(inputs) / log.wall_s
    return log


@torch.inference_mode()
def predict_logits(model: nn.Module, inputs: Tensor, batch_size: int = 1000,
                   batch_transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The model's logits for every row of ``inputs``, in eval mode and without gradients.

    Row ``i`` of the result belongs to ``inputs[i]``: this is how a frozen teacher's outputs are
    precomputed for offline distillation. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        outputs = []
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size]
            outputs.append(model(batch_transform(x) if batch_transform is not None else x))
        return torch.cat(outputs)
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int = 1000,
             batch_transform: Callable[[Tensor], Tensor] | None = None) -> float:
    """Fraction of ``inputs`` whose arg-max prediction equals the label."""
    logits = predict_logits(model, inputs, batch_size, batch_transform)
    return (logits.argmax(dim=1) == labels).float().mean().item()


def config_terms(config: TrainConfig, distilling: bool, labels: bool = True) -> list[Term]:
    """The terms ``config`` describes. Without a teacher: the cross-entropy on the labels, with
    ``config.label_smoothing``. With one (``distilling``): the distillation term, weight
    ``1 - label_weight`` and ``config.temperature``, then (if there are ``labels``) the
    cross-entropy, weight ``label_weight``. This order reproduces, bit for bit, the sum of
    :func:`kdlib.losses.distillation_loss` (the order in which terms are computed decides the
    order in which their gradients are added up)."""
    if not distilling:
        return [LabelTerm(1.0, config.label_smoothing)]
    terms: list[Term] = [KDTerm(config.kd_weight, config.temperature)]
    if labels:
        terms.append(LabelTerm(config.label_weight, config.label_smoothing))
    return terms


def make_optimizer(params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]], config: TrainConfig,
                   fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser ``config`` names, over ``params`` (a model, a list of parameters, or
    parameter groups): Adam, or SGD with ``config.momentum``, which is Nesterov's momentum whenever
    ``momentum > 0``; both with ``config.lr`` and ``config.weight_decay``. Both update all
    parameters in one batched call (``foreach=True``): the same numbers, bit for bit, as
    PyTorch's per-parameter loop on the CPU (its default there), with less overhead per step
    (``tests/test_train.py``).

    ``fused=True`` (SGD only) updates each tensor in one pass over memory, PyTorch's fused
    kernel, instead of one pass per operation: faster for large layers (Table 1's teacher,
    :mod:`kdlib.stacked`), with other last bits (it rounds a product and a sum separately where
    the batched call rounds them once). Where this PyTorch has no such kernel for the device
    (:func:`fused_sgd_supported`), the batched update is used."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    if fused:
        params = list(params)
        first = params[0]["params"][0] if params and isinstance(params[0], dict) else (params or [None])[0]
        fused = first is not None and fused_sgd_supported(first.device.type)
    if config.optimizer == "adam":
        if fused:
            raise ValueError("fused=True is kdlib's fused SGD update; Adam is not fused here: leave fused out")
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.momentum > 0,
                           foreach=not fused, fused=fused)


@functools.cache
def fused_sgd_supported(device_type: str) -> bool:
    """Whether this PyTorch has SGD's fused kernel for tensors on ``device_type`` (``"cpu"``,
    ``"cuda"``): the CPU's came with PyTorch 2.4; kdlib accepts older versions, which lack it."""
    try:
        torch.optim.SGD([torch.zeros(1, device=device_type, requires_grad=True)], lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step learning-rate schedule: optional linear warm-up, then constant or cosine decay."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "constant" and warmup == 0:
        return None

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_epoch_loss(loss: float, epoch: int, earlier: list[float], config: TrainConfig,
                     steps_per_epoch: int = 1) -> float:
    """Stop on a non-finite mean loss, warn on a diverging one; returns ``loss``."""
    if not math.isfinite(loss):
        first, last = (epoch - 1) * steps_per_epoch + 1, epoch * steps_per_epoch
        raise FloatingPointError(
            f"the mean training loss of epoch {epoch} (steps {first} to {last}) is {loss}: training "
            "diverged or overflowed. "
            f"Likely causes: a learning rate too large (lr={config.lr}), an extreme temperature "
            f"(T={config.temperature}), or non-finite values in the data")
    if earlier and loss > DIVERGENCE_FACTOR * earlier[0]:
        warnings.warn(f"the training loss grew from {earlier[0]:.3g} (epoch 1) to {loss:.3g} (epoch {epoch}): "
                      f"training may be diverging; try a smaller learning rate than {config.lr}", stacklevel=3)
    return loss




def check_inputs(model: nn.Module, inputs: Tensor, batch_transform: BatchTransform | None) -> None:
    """Inputs the model can take as they are (without a ``batch_transform``): floating point, of
    the model's dtype, channels second. Each mistake gets a message that says how to fix it."""
    if batch_transform is not None:
        return
    if not inputs.is_floating_point():
        raise TypeError(f"inputs are {inputs.dtype} (raw pixels?), and no batch_transform turns them into "
                        "floats: scale and normalise them once (kdlib.data.normalize(images, mean, std)), or "
                        "pass batch_transform=kdlib.augment.ImageBatchTransform(mean, std, augment=...)")
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    if first is not None and inputs.dtype != first.dtype:
        raise TypeError(f"inputs are {inputs.dtype} but the model's weights are {first.dtype}: convert the "
                        f"inputs once (inputs.to({first.dtype})), e.g. NumPy arrays arrive as float64")
    if inputs.dim() == 4 and inputs.shape[-1] in (1, 3) and inputs.shape[1] not in (1, 3):
        raise ValueError(f"inputs have shape {tuple(inputs.shape)}, channels last (N, H, W, C) as images are "
                         "stored by NumPy and PIL; PyTorch's convolutions take (N, C, H, W): pass "
                         "inputs.permute(0, 3, 1, 2)")


def check_scheduler_per(scheduler: SchedulerFactory | None, per: str | None) -> str:
    """``scheduler_per`` is "step" or "epoch" (default "step"), and applies only with a scheduler."""
    if per is not None and per not in SCHEDULER_PER:
        raise ValueError(f"scheduler_per must be 'step' or 'epoch', got {per!r}")
    if per is not None and scheduler is None:
        raise ValueError("scheduler_per applies to a scheduler factory: pass scheduler=... too, or leave it out "
                         "(the config's own schedule is stepped per step)")
    return per or "step"


def warn_about_epoch_scheduler(schedule: object, per_given: bool) -> None:
    """A schedule usually written in epochs, stepped per step without being told so."""
    if not per_given and type(schedule).__name__ in EPOCH_SCHEDULERS:
        warnings.warn(f"{type(schedule).__name__} is stepped after every optimiser step (scheduler_per='step', "
                      "the default), so its milestones or step sizes count steps, not epochs: pass "
                      "scheduler_per='epoch' if they are epochs", stacklevel=4)


def check_optimizer_covers(opt: torch.optim.Optimizer, params: list[Tensor], terms: Sequence[Term]) -> None:
    """A custom optimiser must train every parameter :func:`train` hands it: a term's own
    parameters (a regressor, an embedding) left out would never train, silently."""
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    missing = [p for p in params if p.requires_grad and id(p) not in held]
    if not missing:
        return
    owners = [type(t).__name__ for t in terms if any(id(p) == id(m) for p in t.parameters() for m in missing)]
    whose = f"of {', '.join(dict.fromkeys(owners))}" if owners else "of the model"
    raise ValueError(f"the optimiser leaves out {len(missing)} parameter(s) {whose}: they would never train. "
                     "Build it from the list train passes to the factory (optimizer=lambda params: "
                     "torch.optim.SGD(params, ...)), not from model.parameters()")


def warn_if_collapsed(train_accuracy: float | None, num_classes: int, count: int, epoch: int,
                      terms: Sequence[Term], names: Sequence[str]) -> bool:
    """Warn when an epoch's training accuracy is no better than chance (``1 / classes`` plus three
    binomial standard errors): the student has collapsed, typically because a term's weight
    drowns the others (e.g. a paper's weight used at another scale). Returns whether it warned."""
    if train_accuracy is None or num_classes < 2 or count < COLLAPSE_MIN_EXAMPLES:
        return False
    chance = 1.0 / num_classes
    if train_accuracy <= chance + 3 * math.sqrt(chance * (1 - chance) / max(1, count)):
        weights = ", ".join(f"{n} (weight {t.weight:g})" for n, t in zip(names, terms))
        warnings.warn(f"epoch {epoch}: training accuracy {train_accuracy:.3f} is at chance ({chance:.3f} for "
                      f"{num_classes} classes): the student has collapsed. The loss's terms: {weights}. "
                      "A term whose weight drowns the others (a paper's weight at another scale) is the "
                      "usual cause: lower it, or check the learning rate (said once per run)", stacklevel=4)
        return True
    return False


def check_aligned(inputs: Tensor, labels: Tensor | None, teacher_logits: Tensor | None) -> None:
    n = len(inputs)
    if labels is not None and len(labels) != n:
        raise ValueError(f"{n} inputs but {len(labels)} labels: they must be aligned row by row")
    if teacher_logits is not None and teacher_logits.dim() == 3:
        if teacher_logits.shape[1] != n:
            raise ValueError(f"{n} inputs but teacher logits of shape {tuple(teacher_logits.shape)}: logits "
                             f"per view must have shape (views, {n}, classes)")
        return
    if teacher_logits is not None and len(teacher_logits) != n:
        raise ValueError(f"{n} inputs but {len(teacher_logits)} rows of teacher logits: compute them "
                         "with predict_logits(teacher, inputs) on the same training tensor")


def check_views(teacher_logits: Tensor, views: Tensor | None) -> None:
    """Logits per view ``(views, N, C)`` need a batch transform that says which view it chose."""
    if teacher_logits.dim() == 3 and views is None:
        raise ValueError(f"teacher_logits has shape {tuple(teacher_logits.shape)} (logits per view), but the "
                         "batch transform returned a batch alone: it must return (batch, views), the view of "
                         "each image (kdlib.fastnet.ViewTransform does)")
    if teacher_logits.dim() != 3 and views is not None:
        raise ValueError("the batch transform returned (batch, views), but teacher_logits has one row per "
                         f"input (shape {tuple(teacher_logits.shape)}), not one per view: pass logits of shape "
                         "(views, N, classes), or a transform that returns the batch alone")
    if views is not None and (views.min() < 0 or views.max() >= len(teacher_logits)):
        raise ValueError(f"the batch transform chose views up to {int(views.max())}, but teacher_logits holds "
                         f"{len(teacher_logits)} views: make the logits with the same view grid")


def check_teacher_logits(teacher_logits: Tensor) -> None:
    """Precomputed teacher logits must be finite. They come from a frozen teacher, not from the
    student's training, so the message points at how they were made, not at the learning rate."""
    if teacher_logits.requires_grad:
        raise ValueError("teacher_logits carry a graph (requires_grad=True): they were computed with gradients, "
                         "so every step would backpropagate into the teacher and keep its graph in memory. "
                         "Compute them with kdlib.train.predict_logits(teacher, inputs) (eval mode, no "
                         "gradients), or call .detach() on them")
    if teacher_logits.is_floating_point() and not torch.isfinite(teacher_logits).all():
        bad = ~torch.isfinite(teacher_logits)
        rows = bad.flatten(0, -2).any(dim=1).nonzero().flatten() if bad.dim() >= 2 else bad.nonzero().flatten()
        raise ValueError(
            f"teacher_logits has NaN or infinite values in {len(rows)} of {len(teacher_logits)} rows (first: "
            f"row {int(rows[0])}): they come from the teacher, not from this training run. Check how they were "
            "made: the log of a probability that underflowed to 0 (e.g. of averaged or sharpened probabilities: "
            "clamp it, or average logits instead), a teacher whose weights are NaN (a broken checkpoint or a "
            "diverged teacher: retrain it), or inputs that are not finite")


# ------------------------------------------------------------------------------------------------
# What train needs: its terms, their parameters, the feature maps they read, their weighted sum


LOSS_DEFAULTS = {"label_weight": 1.0, "temperature": 1.0, "label_smoothing": 0.0}
"""``TrainConfig``'s loss settings at their defaults: with ``terms=``, the config then says nothing
about the loss."""


def resolve_terms(inputs: Tensor, labels: Tensor | None, config: TrainConfig, teacher_logits: Tensor | None,
                  teacher: nn.Module | None, extra_loss: ExtraLoss | None,
                  terms: Sequence[Term] | None) -> list[Term]:
    """Check ``train``'s arguments and return the terms of its loss."""
    if len(inputs) == 0:
        raise ValueError("the training set is empty: pass at least one example")
    check_aligned(inputs, labels, teacher_logits)
    if teacher is not None and teacher_logits is not None:
        raise ValueError("give either teacher_logits (precomputed) or teacher (run per batch), not both")
    distilling = teacher is not None or teacher_logits is not None
    if terms is not None:
        terms = check_terms(list(terms), config, distilling, labels is not None, extra_loss)
        if teacher_logits is not None:
            check_teacher_logits(teacher_logits)
        return terms
    if distilling and config.label_weight == 1.0:
        raise ValueError("label_weight=1 puts all the weight on the hard labels, so the teacher would be "
                         "ignored (label_weight is the weight of the LABEL loss; the KD term gets "
                         "1 - label_weight): pass no teacher, or lower label_weight (e.g. 0.5)")
    if not distilling and config.label_weight != 1.0:
        raise ValueError(f"label_weight={config.label_weight} mixes in a teacher, but no teacher (or "
                         "teacher_logits) was given")
    if labels is None and config.label_weight != 0.0:
        raise ValueError("labels are needed unless label_weight == 0 (training on the teacher's outputs alone)")
    if distilling and config.label_smoothing > 0:
        raise ValueError("label_smoothing applies to training on labels alone; with a teacher set it to 0")
    if teacher_logits is not None:
        check_teacher_logits(teacher_logits)
    built = config_terms(config, distilling, labels is not None)
    return built + ([ExtraLossTerm(extra_loss)] if extra_loss is not None else [])


def check_terms(terms: list[Term], config: TrainConfig, distilling: bool, labels: bool,
                extra_loss: ExtraLoss | None) -> list[Term]:
    """Explicit terms: at least one, all :class:`~kdlib.terms.Term`, and the config's loss among them."""
    if extra_loss is not None:
        raise ValueError("give extra_loss or terms, not both: with terms, add it as a term "
                         "(kdlib.terms.ExtraLossTerm(extra_loss))")
    if not terms:
        raise ValueError("terms is empty: the loss needs at least one term (e.g. kdlib.methods.kd.LabelTerm())")
    wrong = [t for t in terms if not isinstance(t, Term)]
    if wrong:
        raise ValueError(f"terms must be kdlib.terms.Term objects, got {wrong[0]!r} (wrap a function "
                         "f(logits, teacher_logits, labels) in kdlib.terms.ExtraLossTerm)")
    if any(getattr(config, k) != v for k, v in LOSS_DEFAULTS.items()):
        for expected in config_terms(config, distilling, labels):
            if not any(type(t) is type(expected) and vars(t) == vars(expected) for t in terms):
                raise ValueError(
                    f"config sets label_weight={config.label_weight}, temperature={config.temperature}, "
                    f"label_smoothing={config.label_smoothing}, so the terms must include {expected!r}: "
                    "pass terms=[*config_terms(config, distilling=...), ...], or leave the config's loss "
                    "settings at their defaults and let the terms alone describe the loss")
    return terms


def trainable_parameters(model: nn.Module, terms: Sequence[Term]) -> list[Tensor]:
    """The model's parameters, then those of the terms (each parameter once)."""
    params, seen = [], set()
    for p in [*model.parameters(), *(p for term in terms for p in term.parameters())]:
        if id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params


def term_names(terms: Sequence[Term]) -> list[str]:
    """The terms' names, made unique with a suffix (``at``, ``at_2``) when two share one."""
    names: list[str] = []
    for term in terms:
        name, k = term.name, 1
        while name in names:
            k += 1
            name = f"{term.name}_{k}"
        names.append(name)
    return names


def weigh(terms: Sequence[Term], step: Step) -> tuple[Tensor, Tensor]:
    """The loss (the weighted terms summed in order) and the terms' values, detached. At the
    first step each term's value must be a scalar."""
    loss, values = None, []
    for term in terms:
        weighted, value = term.weighted(step)
        if step.check and (not isinstance(weighted, Tensor) or weighted.dim() != 0):
            raise ValueError(f"term {term.name!r} ({type(term).__name__}) must return a scalar tensor, got "
                             f"{type(weighted).__name__} {tuple(getattr(weighted, 'shape', ()))}")
        loss = weighted if loss is None else loss + weighted
        values.append(value.detach().float())
    return loss, torch.stack(values)  # type: ignore[return-value]


class FeatureMaps:
    """Forward hooks on the modules whose outputs the terms asked for (``term.features``), removed
    on leaving the ``with`` block; :meth:`read` gives the latest outputs by name, the teacher's
    copied out of inference mode."""

    def __init__(self, model: nn.Module, teacher: nn.Module | None, terms: Sequence[Term]) -> None:
        self.taps: dict[str, FeatureTap] = {}
        names = list(dict.fromkeys(name for term in terms for name in term.features))
        try:
            for name in names:
                role, path = split_feature(name)
                network = model if role == "student" else teacher
                if network is None:
                    raise ValueError(f"a term reads the teacher's feature map {name!r}: pass teacher=... (run "
                                     "on each batch), not precomputed teacher_logits")
                try:
                    module = network.get_submodule(path)
                except AttributeError:
                    known = [n for n, _ in network.named_modules() if n][:12]
                    raise ValueError(f"feature map {name!r}: the {role} has no module {path!r} (its modules "
                                     f"include {known})") from None
                self.taps[name] = FeatureTap(module)
        except BaseException:
            self.remove()
            raise

    def read(self) -> dict[str, Tensor]:
        maps = {}
        for name, tap in self.taps.items():
            if tap.output is None:
                raise ValueError(f"no output was recorded for feature map {name!r}: its module did not run")
            maps[name] = tap.output.clone() if name.startswith("teacher.") else tap.output
        return maps

    def remove(self) -> None:
        for tap in self.taps.values():
            tap.remove()

    def __enter__(self) -> FeatureMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
