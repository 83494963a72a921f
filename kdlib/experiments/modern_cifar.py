"""Chapter 10's CIFAR-10 measurement: the logit methods distilled from the fast recipe's teacher.

The same measurement as :mod:`kdlib.experiments.modern` (settings chosen on a validation split,
last-epoch test accuracy over paired seeds, the best-epoch scoring beside it), on CIFAR-10:

* **the teacher** is the fast recipe's network (:mod:`kdlib.fastnet`, seed 0, 20 epochs on the
  50,000 training images: ``benchmarks/cifar10_fast.py`` trains and caches it, about 91.3% with
  test-time augmentation). It saw the validation images in training; the students never do;
* **the students** are the same recipe at a fraction of the width (``student_widths``), trained
  for a few epochs on the 45,000 images outside validation, each with the recipe's label
  smoothing: only the distillation term changes between methods;
* **distillation with augmentation, offline**: the teacher's logits on every view of every
  training image (each one-pixel shift, mirrored or not: 18 views) are computed once
  (:func:`kdlib.fastnet.view_logits`, cached); a student trained on random views reads the
  teacher's logits on exactly the view it sees, at no cost per step.

    python -m kdlib.experiments modern-cifar10 --profile full    # results/modern_cifar10_full.json

The quick profile trains its own small teacher on a few thousand images, so that CI runs the
whole pipeline in about a minute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdlib.checkpoints import cached_model, record_teacher
from kdlib.data import ImageDataset, load_cifar10, normalize
from kdlib.distributed import Rank, one_for_all, rank
from kdlib.experiments import start_results
from kdlib.experiments.modern import ModernRun, run_phases, terms_for
from kdlib.fastnet import (FastRecipe, fast_accuracy, fast_cifar_net, teacher_key, train_fast, view_count,
                           view_logits)
from kdlib.precision import use_bfloat16
from kdlib.profile import check_profile
from kdlib.results import ResultFile
from kdlib.threads import set_threads
from kdlib.train import accuracy

EXPERIMENT = "modern-cifar10"
TEACHER_SEED = 0


@dataclass(frozen=True)
class CifarScale:
    """How big a run is in a profile. ``teacher_images`` ``None``: the teacher trains on all 50,000
    training images (the benchmark's cached teacher); a number: on the first that many images
    outside validation."""

    validation: int
    student_images: int | None  # None: every image outside validation
    teacher_epochs: int
    teacher_widths: tuple[int, int, int]
    teacher_images: int | None
    student_epochs: int
    student_widths: tuple[int, int, int]
    translate: int
    batch_size: int
    final_seeds: tuple[int, ...]
    selection_seeds: tuple[int, ...]
    test_images: int | None = None  # None: the whole test set; a number: a random subset of that size

    def teacher_recipe(self) -> FastRecipe:
        return FastRecipe(epochs=self.teacher_epochs, widths=self.teacher_widths)

    def student_recipe(self) -> FastRecipe:
        return FastRecipe(epochs=self.student_epochs, widths=self.student_widths, translate=self.translate,
                          batch_size=self.batch_size, lookahead_start_epochs=min(3, self.student_epochs - 1))


SCALES = {
    "quick": CifarScale(validation=500, student_images=1_000, teacher_epochs=3, teacher_widths=(32, 64, 64),
                        teacher_images=1_000, student_epochs=2, student_widths=(16, 32, 32), translate=1,
                        batch_size=500, final_seeds=(0, 1), selection_seeds=(100,), test_images=500),
    "full": CifarScale(validation=5_000, student_images=None, teacher_epochs=20, teacher_widths=(64, 256, 256),
                       teacher_images=None, student_epochs=5, student_widths=(32, 64, 128), translate=1,
                       batch_size=1024, final_seeds=(0, 1, 2, 3, 4), selection_seeds=(100,)),
}
SCALES["paper"] = SCALES["full"]


@dataclass
class CifarSplit:
    """uint8 images: the students' training images, the validation split; the dataset (test set)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    dataset: ImageDataset  # its test set cut to the scale's test_images


def split(dataset: ImageDataset, scale: CifarScale) -> CifarSplit:
    """Validation: ``scale.validation`` images of a fixed random permutation (seed 0); the
    students' images: the next ``scale.student_images`` (all the rest when ``None``); the test
    set: a random ``scale.test_images`` of it (all when ``None``)."""
    order = torch.randperm(len(dataset.train_images), generator=torch.Generator().manual_seed(0))
    val, rest = order[:scale.validation], order[scale.validation:]
    if scale.student_images is not None:
        rest = rest[:scale.student_images]
    if scale.test_images is not None:  # a random subset: the mirror stores its images sorted by class
        keep = torch.randperm(len(dataset.test_images), generator=torch.Generator().manual_seed(0))
        keep = keep[:scale.test_images].sort().values
        dataset = replace(dataset, test_images=dataset.test_images[keep], test_labels=dataset.test_labels[keep])
    return CifarSplit(dataset.train_images[rest], dataset.train_labels[rest], dataset.train_images[val],
                      dataset.train_labels[val], dataset)


class ViewLogits(nn.Module):
    """The teacher's logits per view, held as a buffer so that the checkpoint cache can verify and
    share them like a network's weights."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.zeros(shape))


def make_teacher(data: CifarSplit, scale: CifarScale) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher: loaded from the checkpoint cache, or trained (about 20 minutes at full scale
    on a 2-core CPU with bfloat16)."""
    recipe, dataset = scale.teacher_recipe(), data.dataset
    key = teacher_key(recipe, TEACHER_SEED, dataset.source,
                      None if scale.teacher_images is None else scale.teacher_images)
    images = dataset.train_images if scale.teacher_images is None else data.x_train[:scale.teacher_images]
    labels = dataset.train_labels if scale.teacher_images is None else data.y_train[:scale.teacher_images]

    def fit(model: nn.Module) -> dict[str, Any]:
        trained, log = train_fast(dataset, recipe, seed=TEACHER_SEED, train_images=images, train_labels=labels)
        model.load_state_dict(trained.state_dict())
        return {"test_accuracy": fast_accuracy(trained, dataset, recipe), "train_wall_s": log.wall_s}

    def build() -> nn.Module:
        return fast_cifar_net(recipe, len(dataset.classes)).to(memory_format=torch.channels_last)

    return cached_model("fastnet", key, build, fit)


def teacher_views(results: ResultFile, data: CifarSplit, scale: CifarScale, where: Rank) -> Tensor:
    """The teacher's logits on every view of the students' training images, ``(views, images,
    classes)``: the teacher and its logits come from the checkpoint cache (or are made, on the
    main rank, and shared); the teacher's row ``"teacher"`` is recorded in ``results``."""
    dataset = data.dataset
    shape = (view_count(scale.translate), len(data.x_train), len(dataset.classes))

    def make() -> nn.Module:
        teacher, info = make_teacher(data, scale)
        record_teacher(results, "teacher", teacher, lambda: {
            "kind": "teacher", "recipe": scale.teacher_recipe().to_dict(), "seed": TEACHER_SEED, **info,
            "accuracy": fast_accuracy(teacher, dataset, scale.teacher_recipe()) / 100,
            "validation_accuracy": accuracy(teacher, normalize(data.x_val, dataset.mean, dataset.std), data.y_val)},
            ("accuracy", 5e-4))
        key = {"teacher": teacher_key(scale.teacher_recipe(), TEACHER_SEED, dataset.source, scale.teacher_images),
               "translate": scale.translate, "images": asdict(scale)["student_images"],
               "validation": scale.validation, "kind": "view-logits"}

        def fill(views: nn.Module) -> dict[str, Any]:
            views.logits.copy_(view_logits(teacher, data.x_train, dataset.mean, dataset.std, scale.translate))
            return {"views": shape[0]}

        views, _ = cached_model("fastnet-views", key, lambda: ViewLogits(shape), fill)
        return views

    return one_for_all(make, lambda: ViewLogits(shape), where).logits


def test_inputs(dataset: ImageDataset) -> Tensor:
    return normalize(dataset.test_images, dataset.mean, dataset.std).contiguous(memory_format=torch.channels_last)


def run_student(run: ModernRun, scale: CifarScale, data: CifarSplit, soft: Tensor) -> dict[str, Any]:
    """Train one student; its row, with the test and validation accuracy after every epoch
    (without test-time augmentation, as training goes: both scorings read the same curve)."""
    recipe, dataset = scale.student_recipe(), data.dataset
    steps = recipe.epochs * -(-len(data.x_train) // recipe.batch_size)
    setting = dict(run.setting)
    terms = terms_for(run.method, setting, steps, label_smoothing=recipe.label_smoothing)
    x_test = test_inputs(dataset)
    x_val = normalize(data.x_val, dataset.mean, dataset.std).contiguous(memory_format=torch.channels_last)
    bf16 = use_bfloat16(x_test.device)
    curve: list[dict[str, float]] = []

    def measure(epoch: int, model: nn.Module) -> dict[str, float]:
        with torch.autocast(x_test.device.type, dtype=torch.bfloat16, enabled=bf16):
            curve.append({"epoch": epoch, "test": accuracy(model, x_test, dataset.test_labels),
                          "validation": accuracy(model, x_val, data.y_val)})
        return {}

    built: list[nn.Module] = []
    try:
        student, log = train_fast(dataset, recipe, seed=run.seed, on_epoch=measure, train_images=data.x_train,
                                  train_labels=data.y_train, terms=terms, on_model=built.append,
                                  teacher_logits=None if run.method == "labels" else soft)
        outcome = {"train_accuracy": log.train_accuracy, "train_wall_s": log.wall_s}
    except FloatingPointError as error:  # a setting that diverges is a result: the network is scored as it is
        student = built[0]
        measure(len(curve) + 1, student.eval())
        outcome = {"diverged": str(error)}
    return {**asdict(run), "setting": setting, "recipe": recipe.to_dict(), "terms": [repr(t) for t in terms],
            "accuracy": curve[-1]["test"], "accuracy_best_epoch": max(c["test"] for c in curve),
            "validation_accuracy": curve[-1]["validation"], "accuracy_tta": fast_accuracy(student, dataset, recipe) / 100,
            "curve": curve, **outcome}


def start_run(out: Path | str | None, experiment: str, command: str | None, profile: str, scale: Any,
              base: CifarScale, dataset: ImageDataset | None) -> tuple[ResultFile, CifarSplit, Tensor, Rank]:
    """The opening of a run that distils from the fast teacher: its result file (``scale`` is
    recorded), the split and the teacher's logits per view that ``base`` defines (cached), and
    this process's rank."""
    where = rank()
    dataset = dataset if dataset is not None else load_cifar10()
    results = start_results(out, experiment, command, profile, scale, "CIFAR-10", dataset.source,
                            set_threads("resnet"))
    data = split(dataset, base)
    return results, data, teacher_views(results, data, base, where), where


def run_modern_cifar(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
                     dataset: ImageDataset | None = None, command: str | None = None,
                     time_budget_s: float | None = None) -> dict[str, Any]:
    """Run (or resume) the CIFAR-10 measurement at ``profile`` scale: the teacher and its logits
    per view (both cached), the selection rows, then the final rows; returns the result data."""
    from kdlib.experiments import TimeBudget

    scale = SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    results, data, soft, where = start_run(out, EXPERIMENT, command, profile, scale, scale, dataset)
    run_phases(results, scale, lambda run: run_student(run, scale, data, soft), budget.spent, where, progress)
    return results.data


__all__ = ["CifarScale", "CifarSplit", "SCALES", "run_modern_cifar", "split", "start_run", "teacher_views"]
