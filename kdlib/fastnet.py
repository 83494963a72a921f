"""A fast CIFAR-10 network and its training recipe, in the spirit of Keller Jordan's airbench.

airbench94 reaches 94% test accuracy on CIFAR-10 in about 10 epochs (0.36 PFLOP of training work)
by combining a handful of ideas, each cheap. kdlib writes its own version of them:

* **a patch-whitening first layer** (:func:`init_whitening`): a 2x2 convolution whose filters are
  the eigenvectors of the covariance of 2x2 image patches, scaled by ``1/sqrt(eigenvalue)``, and
  their negatives. It is set once from training images and never trained (only its bias, for the
  first epochs), so the network starts from decorrelated inputs;
* **a small BatchNorm conv net** (:func:`fast_cifar_net`): three groups of (conv, max-pool,
  batch norm, GELU, conv, batch norm, GELU) with 64, 256 and 256 channels, identity-initialised
  convolutions, batch norms without a trained scale, and a scaled linear head;
* **flip-and-translate augmentation** on the in-memory uint8 tensors (:func:`flip_translate`):
  reflect-pad by 2 pixels, take a random 32x32 crop, mirror half of the images;
* **label smoothing** (0.2), **Nesterov SGD** with a triangular learning-rate schedule (warm-up
  to the peak at 23% of training, then linear decay), a 64 times larger learning rate for the
  batch norms' biases, and decoupled weight decay (:func:`fast_optimizer`, :func:`fast_schedule`);
* **lookahead** (:class:`Lookahead`): from the fourth epoch on, every 5 steps the weights are
  pulled into an exponential moving average of themselves and set to it, with a decay that grows
  over training (fast moves first, strong averaging at the end);
* **distillation with augmentation at the cost of none** (:func:`view_logits`,
  :class:`ViewTransform`): the augmentations form a grid of views (each translation, mirrored or
  not); the teacher's logits on every view of every training image are computed once, and a
  student trained on random views reads the teacher's logits on exactly the view it sees;
* **flip-and-translate test-time augmentation** (:func:`tta_logits`): the logits averaged over the
  image, its mirror and one-pixel shifts of both.

On a CPU with AMX or AVX-512 BF16 the convolutions run in bfloat16 (:mod:`kdlib.precision`), in
``channels_last`` memory format; elsewhere in float32. The training loop is kdlib's one loop,
:func:`kdlib.train.train`: this module only supplies its model, optimiser, schedule and batch
transform (:func:`train_fast`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.data import ImageDataset, normalize
from kdlib.models import seeded
from kdlib.precision import use_bfloat16
from kdlib.terms import Term
from kdlib.train import EpochCallback, TrainConfig, TrainLog, train

__all__ = ["FastRecipe", "ViewTransform", "apply_views", "centre_view", "fast_cifar_net", "teacher_key", "view_count",
           "view_logits", "fast_schedule", "flip_translate",
           "init_whitening", "tta_logits", "FastBatchTransform", "fast_accuracy", "parameter_groups",
           "train_fast", "training_flops", "Lookahead"]


@dataclass(frozen=True)
class FastRecipe:
    """The hyper-parameters of the fast recipe (airbench94's, re-expressed for a mean loss).

    ``lr`` is the peak learning rate of a mean-reduced loss over ``batch_size`` images;
    ``weight_decay`` is the fraction of each weight removed per step at the peak (decoupled from
    the learning rate); ``bias_scaler`` multiplies the batch norms' learning rate."""

    epochs: int = 20
    batch_size: int = 1024
    lr: float = 1.5
    momentum: float = 0.85
    weight_decay: float = 0.002
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    warmup_fraction: float = 0.23
    start_factor: float = 0.2
    end_factor: float = 0.07
    whiten_bias_epochs: int = 3
    lookahead_start_epochs: int = 3  # lookahead (an EMA copied back into the weights) from this epoch on
    lookahead_every: int = 5  # steps between lookahead updates
    lookahead_decay: float = 0.95  # per step, raised to lookahead_every, times (step / steps)**3
    translate: int = 2
    widths: tuple[int, int, int] = (64, 256, 256)
    batchnorm_momentum: float = 0.4  # PyTorch's convention: weight of the new batch statistics
    head_scale: float = 1 / 9
    tta: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not 0 < self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in (0, 1), got {self.warmup_fraction!r}")
        if self.translate < 0:
            raise ValueError(f"translate must be >= 0 pixels, got {self.translate!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Conv(nn.Conv2d):
    """A 3x3 'same' convolution without bias whose first ``in_channels`` filters start as the
    identity (a Dirac kernel): the network starts close to passing its input through."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.dirac_(self.weight.data[: self.weight.size(1)])


class BatchNorm(nn.BatchNorm2d):
    """Batch norm with a trained bias and a fixed scale of 1."""

    def __init__(self, channels: int, momentum: float) -> None:
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Sequential):
    """conv, max-pool 2x2, batch norm, GELU, conv, batch norm, GELU."""

    def __init__(self, in_channels: int, channels: int, momentum: float) -> None:
        super().__init__(Conv(in_channels, channels), nn.MaxPool2d(2), BatchNorm(channels, momentum), nn.GELU(),
                         Conv(channels, channels), BatchNorm(channels, momentum), nn.GELU())


class Scale(nn.Module):
    """Multiply by a constant."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def fast_cifar_net(recipe: FastRecipe | None = None, num_classes: int = 10) -> nn.Sequential:
    """The fast recipe's network, with named children: ``whiten`` (the 2x2 patch-whitening
    convolution, 24 filters, weights frozen), ``stage1`` to ``stage3`` (the conv groups) and
    ``head`` (max-pool, flatten, linear without bias, scale). Call :func:`init_whitening` on
    training images before training."""
    recipe = recipe or FastRecipe()
    w1, w2, w3 = recipe.widths
    whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
    whiten.weight.requires_grad_(False)
    return nn.Sequential(OrderedDict(
        whiten=nn.Sequential(whiten, nn.GELU()),
        stage1=ConvGroup(24, w1, recipe.batchnorm_momentum),
        stage2=ConvGroup(w1, w2, recipe.batchnorm_momentum),
        stage3=ConvGroup(w2, w3, recipe.batchnorm_momentum),
        head=nn.Sequential(nn.MaxPool2d(3), nn.Flatten(), nn.Linear(w3, num_classes, bias=False),
                           Scale(recipe.head_scale)),
    ))


@torch.no_grad()
def init_whitening(model: nn.Sequential, images: Tensor, eps: float = 5e-4) -> None:
    """Set the whitening layer's filters from normalised float ``images`` ``(N, 3, H, W)``: the
    eigenvectors of the 2x2-patch covariance scaled by ``1/sqrt(eigenvalue + eps)``, and their
    negatives (so that the GELU after it keeps both signs)."""
    conv = model.whiten[0]
    c, (h, w) = images.shape[1], conv.weight.shape[2:]
    patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, c, h, w)
    conv.weight.copy_(torch.cat([filters, -filters]))


def flip_translate(images: Tensor, generator: torch.Generator, translate: int = 2) -> Tensor:
    """Random translations by up to ``translate`` pixels (reflect padding) and horizontal flips of
    a float batch ``(N, C, H, W)``: one gather for the whole batch."""
    from kdlib.augment import random_crop_flip
    return random_crop_flip(images, generator, padding=translate, flip=True, pad_mode="reflect")


class FastBatchTransform:
    """uint8 batch -> flipped and translated, normalised float batch in ``channels_last``."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], translate: int) -> None:
        self.mean, self.std, self.translate = mean, std, translate

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        x = normalize(images, self.mean, self.std)
        if self.translate:
            x = flip_translate(x, generator, self.translate)
        return x.contiguous(memory_format=torch.channels_last)


def view_count(translate: int) -> int:
    """How many views the grid of ``translate`` has: every shift by ``-translate .. translate``
    pixels in each direction, mirrored or not."""
    return 2 * (2 * translate + 1) ** 2


def centre_view(translate: int) -> int:
    """The view of :func:`apply_views` that is the image itself: the centre of the grid, not
    mirrored."""
    return (2 * translate + 1) ** 2 // 2


def apply_views(images: Tensor, views: Tensor, translate: int) -> Tensor:
    """View ``views[i]`` of image ``i`` of a float batch ``(N, C, H, W)``: view ``v`` is the crop
    at row ``(v // K) % K`` and column ``v % K`` of the image reflect-padded by ``translate``
    (``K = 2 * translate + 1``; the centre is the image itself), mirrored when ``v >= K * K``."""
    from kdlib.augment import crop_flip

    k = 2 * translate + 1
    return crop_flip(images, (views // k) % k, views % k, views >= k * k, translate, pad_mode="reflect")


class ViewTransform(FastBatchTransform):
    """uint8 batch -> a random view of each image (:func:`apply_views`), normalised and in
    ``channels_last``, returned with the views chosen: ``(batch, views)``, as
    :func:`kdlib.train.train` expects with teacher logits per view."""

    def __call__(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        views = torch.randint(0, view_count(self.translate), (len(images),), generator=generator,
                              device=generator.device).to(images.device)
        x = apply_views(normalize(images, self.mean, self.std), views, self.translate)
        return x.contiguous(memory_format=torch.channels_last), views


@torch.inference_mode()
def view_logits(model: nn.Module, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                translate: int, batch_size: int = 500, mixed_precision: bool | None = None) -> Tensor:
    """A frozen teacher's logits on every view of every uint8 image: shape ``(views, N, classes)``,
    float32 (the forward pass in bfloat16 where :func:`kdlib.precision.use_bfloat16` says so)."""
    if mixed_precision is None:
        mixed_precision = use_bfloat16(images.device)
    model.eval()
    out = []
    for v in range(view_count(translate)):
        per_view = []
        for batch in images.split(batch_size):
            views = torch.full((len(batch),), v, device=images.device)
            x = apply_views(normalize(batch, mean, std), views, translate)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
                per_view.append(model(x.contiguous(memory_format=torch.channels_last)).float())
        out.append(torch.cat(per_view))
    return torch.stack(out)


def teacher_key(recipe: FastRecipe, seed: int, source: str, train_images: int | None = None) -> dict[str, Any]:
    """What identifies a trained fast-recipe network in the checkpoint cache: its recipe, its
    seed, the data it saw (and how many of the training images, when not all)."""
    key = {"recipe": recipe.to_dict(), "seed": seed, "data": source, "kind": "fastnet"}
    if train_images is not None:
        key["train_images"] = train_images
    return key


def fast_schedule(recipe: FastRecipe, total_steps: int):
    """A scheduler factory: the triangular schedule, ``start_factor`` -> 1 at ``warmup_fraction``
    of training -> ``end_factor`` at the end, stepped after every optimiser step."""
    peak = max(1, int(recipe.warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < peak:
            return recipe.start_factor + (1 - recipe.start_factor) * step / peak
        progress = min(1.0, (step - peak) / max(1, total_steps - peak))
        return 1 + (recipe.end_factor - 1) * progress

    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.inference_mode()
def tta_logits(model: nn.Module, images: Tensor, batch_size: int = 1000, flip: bool = True,
               translate: bool = True) -> Tensor:
    """Test-time augmentation: the logits of each normalised image averaged with its mirror image
    (``flip``) and, with ``translate``, with the mean of its one-pixel shifts up-left and
    down-right (reflect padding), weighted half and half as airbench does."""
    model.eval()
    out = []
    for x in images.split(batch_size):
        x = x.contiguous(memory_format=torch.channels_last)

        def mirror(v: Tensor) -> Tensor:
            return 0.5 * (model(v).float() + model(v.flip(-1)).float()) if flip else model(v).float()

        logits = mirror(x)
        if translate:
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            h, w = x.shape[-2:]
            shifted = [padded[:, :, :h, :w], padded[:, :, 2:h + 2, 2:w + 2]]
            logits = 0.5 * logits + 0.25 * sum(mirror(s.contiguous(memory_format=torch.channels_last))
                                               for s in shifted)
        out.append(logits)
    return torch.cat(out)


def training_flops(recipe: FastRecipe, images: int = 50_000, size: int = 32) -> float:
    """Multiply-adds times 2 of the convolutions and the linear layer, forward and backward (3x
    the forward), over ``recipe.epochs`` epochs of ``images`` images."""
    w1, w2, w3 = recipe.widths
    s0 = size - 1                      # after the 2x2 whitening convolution
    s1, s2, s3 = s0 // 2, s0 // 4, s0 // 8
    macs = (s0 * s0 * 24 * 3 * 4
            + s0 * s0 * w1 * 24 * 9 + s1 * s1 * w1 * w1 * 9
            + s1 * s1 * w2 * w1 * 9 + s2 * s2 * w2 * w2 * 9
            + s2 * s2 * w3 * w2 * 9 + s3 * s3 * w3 * w3 * 9
            + w3 * 10)
    return 2.0 * macs * 3 * images * recipe.epochs


def parameter_groups(model: nn.Module, recipe: FastRecipe, extra: list[Tensor] = ()) -> list[dict[str, Any]]:
    """The two optimiser groups of the fast recipe."""
    norm = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters() if p.requires_grad]
    norm_ids = {id(p) for p in norm}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_ids] + list(extra)
    lr_bias = recipe.lr * recipe.bias_scaler
    return [dict(params=norm, lr=lr_bias, weight_decay=recipe.weight_decay / lr_bias),
            dict(params=other, lr=recipe.lr, weight_decay=recipe.weight_decay / recipe.lr)]


class Lookahead:
    """airbench's lookahead: an exponential moving average of the network's floating-point state
    (weights and batch-norm statistics) that is copied back into the network at each update.

    :meth:`after_step` is registered as the optimiser's step post-hook by :func:`train_fast`:
    from epoch ``start_epochs`` on (0-based), every ``every`` steps, ``ema <- ema + (1 - rho) *
    (net - ema)`` and ``net <- ema``, with ``rho = decay**every * (step / total_steps)**3``; at
    the end of each epoch ``net <- ema``."""

    def __init__(self, model: nn.Module, recipe: FastRecipe, steps_per_epoch: int, total_steps: int) -> None:
        self.model, self.recipe = model, recipe
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.step, self.ema = 0, None

    def tensors(self) -> list[Tensor]:
        return [v for v in self.model.state_dict().values() if v.dtype.is_floating_point]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        for average, current in zip(self.ema, self.tensors()):
            average.lerp_(current, 1 - decay)
            current.copy_(average)

    def after_step(self, *_: Any) -> None:
        self.step += 1
        epoch = (self.step - 1) // self.steps_per_epoch
        every = self.recipe.lookahead_every
        if epoch >= self.recipe.lookahead_start_epochs and self.step % every == 0:
            if self.ema is None:
                self.ema = [t.detach().clone() for t in self.tensors()]
            else:
                self.update(self.recipe.lookahead_decay ** every * (self.step / self.total_steps) ** 3)
        if self.ema is not None and self.step % self.steps_per_epoch == 0:
            self.update(1.0)


def train_fast(data: ImageDataset, recipe: FastRecipe | None = None, seed: int = 0,
               on_epoch: EpochCallback | None = None, mixed_precision: bool | None = None,
               train_images: Tensor | None = None, train_labels: Tensor | None = None,
               terms: list[Term] | None = None, teacher_logits: Tensor | None = None,
               on_model: Callable[[nn.Module], None] | None = None,
               teacher: nn.Module | None = None,
               start: nn.Module | None = None) -> tuple[nn.Module, TrainLog]:
    """Train the fast recipe's network on ``data``'s training images (or on ``train_images`` /
    ``train_labels``, uint8, when given: a validation split, say) with kdlib's one training loop.

    To distil, pass ``terms`` (the loss: the recipe's label smoothing then belongs to their label
    term) and ``teacher_logits`` of shape ``(views, N, classes)`` from :func:`view_logits` with
    the recipe's ``translate``: the student trains on random views and reads the teacher's
    logits on each. For terms that read the teacher's feature maps (FitNets, attention transfer,
    CRD), pass the frozen ``teacher`` network instead: it is run on each batch, on the very views
    the student sees, drawn as with ``teacher_logits`` (the same seed gives the same views).
    ``on_model(network)``, if given, is called with the network before training
    (a handle to score it by, should training fail).

    ``mixed_precision`` defaults to :func:`kdlib.precision.use_bfloat16` on the CPU. ``on_epoch``
    is passed to :func:`kdlib.train.train` (after the whitening bias is frozen at the end of
    epoch ``recipe.whiten_bias_epochs``).

    ``start``, if given, is a trained network to fine-tune instead of a fresh one (a
    quantization-aware copy from :func:`kdlib.quantize.prepare_qat`, say): it is trained as it
    is, in place, its whitening layer untouched, so ``whiten_bias_epochs`` does not apply."""
    recipe = recipe or FastRecipe()
    images = data.train_images if train_images is None else train_images
    labels = data.train_labels if train_labels is None else train_labels
    if images.dtype != torch.uint8:
        raise TypeError(f"train_fast expects uint8 images (the dataset's own), got {images.dtype}")
    if mixed_precision is None:
        mixed_precision = use_bfloat16(images.device)
    if start is None:
        model = seeded(lambda: fast_cifar_net(recipe, num_classes=len(data.classes)), seed)
        # a random sample: the images of a dataset may be stored sorted by class (the mirror is)
        sample = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:5000]
        init_whitening(model, normalize(images[sample], data.mean, data.std))
        model = model.to(memory_format=torch.channels_last)
    else:
        model = start.train()
    if on_model is not None:
        on_model(model)
    if teacher_logits is not None and (teacher_logits.dim() != 3 or len(teacher_logits) != view_count(recipe.translate)):
        raise ValueError(f"teacher_logits of shape {tuple(teacher_logits.shape)}: train_fast distils from the "
                         f"logits of every view, shape ({view_count(recipe.translate)}, images, classes) for "
                         f"translate={recipe.translate}; make them with kdlib.fastnet.view_logits")
    smoothing = recipe.label_smoothing if terms is None else 0.0  # with terms, the terms say it
    config = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                         momentum=recipe.momentum, label_smoothing=smoothing, seed=seed,
                         mixed_precision=mixed_precision)
    per_epoch = -(-len(images) // recipe.batch_size)
    steps = recipe.epochs * per_epoch
    lookahead = Lookahead(model, recipe, per_epoch, steps)

    def optimizer(params: list[Tensor]) -> torch.optim.Optimizer:
        own = {id(p) for p in model.parameters()}
        extra = [p for p in params if id(p) not in own]
        sgd = torch.optim.SGD(parameter_groups(model, recipe, extra), momentum=recipe.momentum, nesterov=True)
        sgd.register_step_post_hook(lookahead.after_step)
        return sgd

    def after_epoch(epoch: int, net: nn.Module) -> dict[str, float] | None:
        if start is None and epoch == recipe.whiten_bias_epochs:
            net.whiten[0].bias.requires_grad_(False)
        return on_epoch(epoch, net) if on_epoch is not None else None

    if teacher is not None and teacher_logits is not None:
        raise ValueError("give train_fast either teacher_logits (precomputed per view) or teacher (run on each "
                         "batch), not both")
    views = teacher_logits is not None or teacher is not None
    transform = (ViewTransform if views else FastBatchTransform)(data.mean, data.std, recipe.translate)
    log = train(model, images, labels, config, teacher_logits=teacher_logits, teacher=teacher,
                batch_transform=transform,
                on_epoch=after_epoch, optimizer=optimizer, scheduler=fast_schedule(recipe, steps), terms=terms)
    model.eval()
    return model, log


def fast_accuracy(model: nn.Module, data: ImageDataset, recipe: FastRecipe | None = None,
                  mixed_precision: bool | None = None) -> float:
    """Test accuracy (%) of a fast-recipe network, with the recipe's test-time augmentation."""
    recipe = recipe or FastRecipe()
    x = normalize(data.test_images, data.mean, data.std)
    if mixed_precision is None:
        mixed_precision = use_bfloat16(x.device)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
        logits = tta_logits(model, x, flip=recipe.tta, translate=recipe.tta)
    return 100.0 * (logits.argmax(1) == data.test_labels).float().mean().item()
