"""One training loop for ordinary training and for offline distillation.

The whole training set is a tensor in memory; each step draws a mini-batch by indexing it with a
slice of a random permutation, so there is no per-sample Python. In offline distillation the
teacher's logits are computed once, before training, as a tensor ``teacher_logits`` whose row
``i`` belongs to training example ``i``; the loop indexes inputs, labels and teacher logits with
the *same* index tensor, so shuffling can never misalign them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from kdlib.losses import (check_label_smoothing, check_label_weight, check_temperature, distillation_loss,
                          refuse_alpha, softmax_cross_entropy)

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]
"""Turns a stored batch (e.g. uint8 images) into network input (e.g. augmented, normalised floats)."""

EpochCallback = Callable[[int, nn.Module], dict[str, float] | None]
"""Called after each epoch with the epoch number (1-based) and the model; what it returns is kept."""

ExtraLoss = Callable[[Tensor, "Tensor | None", "Tensor | None"], Tensor]
"""An extra term of the loss (an adversarial or a hint loss: :mod:`kdlib.adversarial`,
:mod:`kdlib.features`), called at every step with the student's logits, the teacher's logits
(``None`` without a teacher) and the batch's labels (``None`` without labels)."""

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
        check_temperature(self.temperature)
        check_label_weight(self.label_weight)
        check_label_smoothing(self.label_smoothing)

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
    """What a training run measured: wall time, throughput, the mean loss of each epoch and what
    the epoch callback (if any) returned after each epoch."""

    wall_s: float
    samples_per_s: float
    epoch_losses: list[float]
    history: list[dict[str, float]] = field(default_factory=list)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.momentum > 0)


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


def check_aligned(inputs: Tensor, labels: Tensor | None, teacher_logits: Tensor | None) -> None:
    n = len(inputs)
    if labels is not None and len(labels) != n:
        raise ValueError(f"{n} inputs but {len(labels)} labels: they must be aligned row by row")
    if teacher_logits is not None and len(teacher_logits) != n:
        raise ValueError(f"{n} inputs but {len(teacher_logits)} rows of teacher logits: compute them "
                         "with predict_logits(teacher, inputs) on the same training tensor")


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
) -> TrainLog:
    """Train ``model`` in place on ``(inputs, labels)``, distilling from a teacher if one is given.

    * no teacher: ordinary training with the softmax cross-entropy (``label_weight`` must then be 1);
    * ``teacher_logits``: precomputed logits of a frozen teacher, row ``i`` for ``inputs[i]``
      (offline distillation without data augmentation);
    * ``teacher``: a frozen teacher run in eval mode, without gradients, on each transformed
      batch (needed when ``batch_transform`` augments the data, so that teacher and student see
      the same augmented images).

    With a teacher the loss is the distillation loss with ``config.temperature`` and
    ``config.label_weight``; ``labels`` may be ``None`` when ``label_weight == 0`` (the teacher
    alone). ``extra_loss(logits, teacher_logits, labels)``, if given, is added at every step.

    The inputs of the loss are checked on the first step only (checks that read values force the
    CPU to wait for the device); after that, each epoch's mean loss is checked: a non-finite loss
    stops training with an error, a loss that grows tenfold gives a warning.
    """
    if len(inputs) == 0:
        raise ValueError("the training set is empty: pass at least one example")
    check_aligned(inputs, labels, teacher_logits)
    if teacher is not None and teacher_logits is not None:
        raise ValueError("give either teacher_logits (precomputed) or teacher (run per batch), not both")
    if teacher is not None:
        teacher.eval()
    distilling = teacher is not None or teacher_logits is not None
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
    torch.manual_seed(config.seed)
    # random numbers (order, augmentation) are drawn where the data live: no copies per step
    generator = torch.Generator(device=inputs.device).manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = -(-len(inputs) // config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    model.train()
    epoch_losses: list[float] = []
    history: list[dict[str, float]] = []
    first_step = True
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(inputs), generator=generator, device=inputs.device)
        total, count = torch.zeros((), device=inputs.device), 0
        for idx in tqdm(order.split(config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}",
                        disable=not progress, leave=False):
            x = inputs[idx]
            if batch_transform is not None:
                x = batch_transform(x, generator)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
                logits = model(x).float()
                if teacher is not None:
                    with torch.inference_mode():
                        soft = teacher(x).float()
                    soft = soft.clone()  # an inference tensor cannot be saved for backward
                elif teacher_logits is not None:
                    soft = teacher_logits[idx]
            if not distilling:
                loss = softmax_cross_entropy(logits, labels[idx],  # type: ignore[index]
                                             config.label_smoothing, check=first_step)
            else:
                loss = distillation_loss(logits, soft, None if labels is None else labels[idx],
                                         config.temperature, config.label_weight, check=first_step)
            if extra_loss is not None:
                loss = loss + extra_loss(logits, soft if distilling else None,
                                         None if labels is None else labels[idx])
            first_step = False
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.detach() * len(idx)
            count += len(idx)
        epoch_losses.append(check_epoch_loss(total.item() / count, epoch + 1, epoch_losses, config,
                                             steps_per_epoch))
        if on_epoch is not None:
            history.append(on_epoch(epoch + 1, model) or {})
            model.train()
    wall = time.perf_counter() - start
    return TrainLog(wall_s=wall, samples_per_s=config.epochs * len(inputs) / wall, epoch_losses=epoch_losses,
                    history=history)


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
