"""Chapter 9: landmark results of the field, reproduced on MNIST.

Three parts, each a set of student runs paired by seed against one teacher:

* ``hinton``: Hinton et al. (2015), section 3. A 784-1200-1200 teacher regularised with dropout,
  a max-norm constraint and inputs jittered by up to two pixels; 784-800-800 students without
  regularisation, trained on the labels alone (``nokd``) or with the teacher's soft targets at
  T = 20 (``kd``); and a self-distilled student with the teacher's own architecture (1200-1200).
* ``no3``: dark knowledge of a class the student never saw: the transfer set has no 3 at all.
  Afterwards the bias of class 3 is raised by an amount chosen on a held-out validation split of
  the training images (never on the test set).
* ``only78``: the transfer set holds only 7s and 8s; the biases of 7 and 8 are lowered by an
  amount chosen the same way.
* ``consistency``: patient and consistent teaching (Beyer et al., 2022) on chapter 8's CIFAR-10
  reduced-set setting: a *fixed* teacher (its logits computed once, on un-augmented images)
  against a *consistent* one (it sees the student's augmented batch), at chapter 8's schedule and
  at a longer one, beside students trained on the labels alone.

Every student row of section 1 also records its *fidelity* (:mod:`kdlib.fidelity`, Stanton et
al., 2021): top-1 agreement with the teacher and KL(teacher || student) at T = 1, on training and
on test images.

``python -m kdlib.experiments anchors --profile full`` writes ``results/anchors_full.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

import kdlib
from kdlib.augment import random_shift
from kdlib.checkpoints import cached_model, record_teacher
from kdlib.data import ImageDataset, load_mnist
from kdlib.distributed import Rank, broadcast, one_for_all, rank, run_rows
from kdlib import experiments
from kdlib.experiments import planned_rows, run_command
from kdlib.experiments.mnist import balanced_subset, prepare_inputs
from kdlib.fidelity import fidelity_fields
from kdlib.figures import COLUMN_INCHES, book_style, legend_below
from kdlib.models import mlp, seeded
from kdlib.profile import check_profile
from kdlib.results import ResultFile, new_provenance
from kdlib.stats import paired_gap
from kdlib.threads import set_threads
from kdlib.stacked import train_stacked
from kdlib.train import TrainConfig, TrainLog, predict_logits, train

PARTS = ("hinton", "no3", "only78", "consistency")
MNIST_PARTS = PARTS[:3]

# Hinton et al. (2015), section 3 and its transfer-set experiments: errors of 10,000 test images.
PAPER = {
    "teacher_errors": 67, "student_errors": 146, "distilled_errors": 74,
    "no3_errors": 206, "no3_errors_on_3s": 133, "no3_shift": 3.5,
    "no3_shifted_errors": 109, "no3_shifted_errors_on_3s": 14,
    "only78_error_pct": 47.3, "only78_shifted_error_pct": 13.2,
}
TEST_THREES = 1_010  # the 3s among MNIST's 10,000 test images

# The teacher: dropout 0.2 on the inputs and 0.5 after each hidden layer, max-norm 3.5 on each
# unit's incoming weights, random shifts of up to 2 pixels; SGD (Nesterov), a 2-epoch warm-up and
# a cosine decay. (A first run at lr 0.1 without warm-up was unstable in its first epochs and
# ended at 255 test errors; chapter 9 says so.)
TEACHER = {"hidden": (1200, 1200), "dropout": 0.5, "input_dropout": 0.2, "max_norm": 3.5, "shift": 2}
TEACHER_SEED = 0
# Students: no regularisation; KD at T = 20 with a small weight on the hard labels, as Hinton et
# al. advise ("a considerably lower weight on the second objective function").
STUDENT = {"batch_size": 128, "lr": 0.01}
KD = {"temperature": 20.0, "label_weight": 0.1}
SHIFTS = tuple(float(s) for s in np.arange(0.0, 20.01, 0.25))  # bias shifts tried on validation


@dataclass(frozen=True)
class AnchorScale:
    """How big the anchors are in a profile."""

    train_size: int | None  # None: all 60,000 training images
    seeds: tuple[int, ...]  # student seeds (the teacher has one seed)
    teacher_epochs: int
    student_epochs: int
    validation_size: int  # held out of the transfer sets of no3 and only78, to choose bias shifts
    self_distillation: bool = True
    cifar_profile: str = "quick"  # consistency: chapter 8's CIFAR-10 recipe at this profile
    cifar_seeds: tuple[int, ...] = (0,)
    patience: tuple[int, ...] = (1, 2)  # consistency: schedules, in multiples of chapter 8's epochs
    schedules: tuple[int, ...] = ()
    """Hinton's pair: the student schedules (epochs) tried first, one student of each kind and
    schedule (seed 0) trained on the training images outside the validation split; each kind
    then trains for the schedule that made the fewest validation errors (:func:`chosen_epochs`).
    Empty: every student trains for ``student_epochs``."""


SCALES: dict[str, AnchorScale] = {
    "quick": AnchorScale(train_size=3_000, seeds=(0,), teacher_epochs=2, student_epochs=2,
                         validation_size=500, self_distillation=False, schedules=(1, 2)),
    "full": AnchorScale(train_size=None, seeds=(0, 1, 2), teacher_epochs=200, student_epochs=20,
                        validation_size=5_000, cifar_profile="full", cifar_seeds=(0, 1, 2), patience=(1, 2),
                        schedules=(20, 60, 150)),
}
SCALES["paper"] = SCALES["full"]


@dataclass(frozen=True)
class AnchorRun:
    """One MNIST student run; its fields are its identity in the result file."""

    part: str  # "hinton", "no3", "only78", or "schedule" (Hinton's pair, choosing its epochs)
    kind: str  # "kd" (soft targets at T, plus labels) or "nokd" (labels only)
    seed: int
    epochs: int
    hidden: tuple[int, ...] = (800, 800)

    def __post_init__(self) -> None:
        if self.part not in (*MNIST_PARTS, "schedule"):
            raise ValueError(f"part must be one of {(*MNIST_PARTS, 'schedule')}, got {self.part!r}")
        if self.kind not in ("kd", "nokd"):
            raise ValueError(f"kind must be 'kd' or 'nokd', got {self.kind!r}")

    def config(self) -> TrainConfig:
        kd = KD if self.kind == "kd" else {}
        return TrainConfig(epochs=self.epochs, lr_schedule="cosine", seed=self.seed, **STUDENT, **kd)

    def row_id(self) -> str:
        c = self.config()
        width = "-".join(map(str, self.hidden))
        return (f"{self.part}/{self.kind}/h{width}/T{c.temperature:g}_w{c.label_weight:g}"
                f"/e{c.epochs}_b{c.batch_size}_lr{c.lr:g}/seed{self.seed}")


KINDS = ("kd", "nokd")


def schedule_runs(scale: AnchorScale) -> list[AnchorRun]:
    """The runs that choose the epochs of Hinton's pair: one per kind and tried schedule, seed 0."""
    return [AnchorRun("schedule", kind, 0, epochs) for epochs in scale.schedules for kind in KINDS]


def chosen_epochs(scale: AnchorScale, rows: dict[str, Any]) -> dict[str, int]:
    """The epochs of Hinton's pair, by kind: ``student_epochs`` when the scale tries no
    schedules; else, for each kind whose schedule rows are all in ``rows``, the schedule with the
    fewest validation errors (the shorter on ties). A kind whose rows are not all there yet is
    left out: its students cannot be planned before they are."""
    if not scale.schedules:
        return {kind: scale.student_epochs for kind in KINDS}
    chosen = {}
    for kind in KINDS:
        found = [rows.get(run.row_id()) for run in schedule_runs(scale) if run.kind == kind]
        if all(found):
            chosen[kind] = min(found, key=lambda r: (r["validation_errors"], r["epochs"]))["epochs"]
    return chosen


def planned_runs(scale: AnchorScale, parts: tuple[str, ...] = PARTS,
                 chosen: dict[str, int] | None = None) -> list[AnchorRun]:
    """Every student run, in priority order: the schedules tried for Hinton's pair, the pair per
    seed, then the transfer sets, then self-distillation (the most expensive). ``chosen``: the
    pair's epochs by kind (:func:`chosen_epochs`); a kind without them is not planned yet."""
    chosen = chosen_epochs(scale, {}) if chosen is None else chosen
    e = scale.student_epochs
    runs: list[AnchorRun | ConsistencyRun] = []
    if "hinton" in parts:
        runs += schedule_runs(scale)
        runs += [AnchorRun("hinton", kind, seed, chosen[kind]) for seed in scale.seeds for kind in KINDS
                 if kind in chosen]
    for part in [p for p in ("no3", "only78") if p in parts]:
        for seed in scale.seeds:
            runs += [AnchorRun(part, "kd", seed, e), AnchorRun(part, "nokd", seed, e)]
    if scale.self_distillation and "hinton" in parts:
        runs += [AnchorRun("hinton", "kd", seed, e, hidden=TEACHER["hidden"]) for seed in scale.seeds]
    if "consistency" in parts:
        runs += [ConsistencyRun(teaching, patience, seed) for patience in scale.patience
                 for seed in scale.cifar_seeds for teaching in TEACHING]
    return runs


def teacher_config(scale: AnchorScale) -> TrainConfig:
    return TrainConfig(epochs=scale.teacher_epochs, batch_size=128, lr=0.05, lr_schedule="cosine",
                       warmup_epochs=min(2, scale.teacher_epochs - 1), seed=TEACHER_SEED)


def build_teacher() -> nn.Module:
    return mlp(TEACHER["hidden"], dropout=TEACHER["dropout"], input_dropout=TEACHER["input_dropout"],
               max_norm=TEACHER["max_norm"])


def test_errors_callback(x_test: Tensor, y_test: Tensor, name: str = "test_errors"):
    """An epoch callback that records the errors on ``x_test`` after each epoch (the training
    curve), under ``name``."""

    def record(epoch: int, model: nn.Module) -> dict[str, float]:
        return {"epoch": epoch, name: errors(predict_logits(model, x_test), y_test)}

    return record


def errors(logits: Tensor, labels: Tensor) -> int:
    return int((logits.argmax(1) != labels).sum())


def load_or_train_teacher(scale: AnchorScale, profile: str, data: tuple[Tensor, ...], source: str,
                          results: ResultFile) -> nn.Module:
    """The teacher, trained once on every training image (or loaded from its verified checkpoint)
    and recorded as the row ``teacher``."""
    x_train, y_train, x_test, y_test = data
    config = teacher_config(scale)
    key = {"experiment": "anchors-teacher", **{k: list(v) if isinstance(v, tuple) else v
                                               for k, v in TEACHER.items()},
           "config": config.to_dict(), "data": source, "train_rows": len(x_train), "profile": profile,
           "kdlib": kdlib.__version__}

    def fit(model: nn.Module) -> dict[str, Any]:
        shift = lambda x, g: random_shift(x, g, TEACHER["shift"])  # noqa: E731
        before = torch.get_num_threads()
        threads = set_threads("large mlp")  # 1.7x as fast as one thread on two cores
        try:
            log = train(model, x_train, y_train, config, batch_transform=shift,
                        on_epoch=test_errors_callback(x_test, y_test))
        finally:
            torch.set_num_threads(before)
        return {"train_wall_s": log.wall_s, "torch_threads": threads, "curve": log.history}

    teacher, info = cached_model("anchors_teacher", key, build_teacher, fit)
    teacher.eval()
    record_teacher(results, "teacher", teacher, lambda: {
        "kind": "teacher", **{k: list(v) if isinstance(v, tuple) else v for k, v in TEACHER.items()},
        "config": config.to_dict(), "seed": TEACHER_SEED,
        "errors": errors(predict_logits(teacher, x_test), y_test), **info}, ("errors", 5))
    return teacher


def transfer_split(y_train: Tensor, validation_size: int) -> tuple[Tensor, Tensor]:
    """Indices of the validation split (class-balanced, seed 0) and of the rest of the training set."""
    validation = balanced_subset(y_train, validation_size, seed=0)
    rest = torch.ones(len(y_train), dtype=torch.bool)
    rest[validation] = False
    return validation, rest.nonzero().flatten()


def shifted(logits: Tensor, classes: tuple[int, ...], shift: float) -> Tensor:
    """``logits`` with ``shift`` added to the columns of ``classes`` (a change of their biases)."""
    out = logits.clone()
    out[:, list(classes)] += shift
    return out


def best_shift(logits: Tensor, labels: Tensor, classes: tuple[int, ...], sign: float) -> float:
    """The bias shift ``sign * s`` (s in :data:`SHIFTS`) that makes the fewest errors on the
    validation images given; the smallest such s on ties."""
    counts = [errors(shifted(logits, classes, sign * s), labels) for s in SHIFTS]
    return sign * SHIFTS[int(np.argmin(counts))]


PART_CLASSES = {"no3": ((3,), +1.0), "only78": ((7, 8), -1.0)}  # classes whose bias moves, direction


def transfer_set(part: str, y_train: Tensor, validation_size: int) -> tuple[Tensor, Tensor]:
    """(transfer-set indices, validation indices) of a part: all training images for ``hinton``;
    for ``schedule`` the training images outside the validation split; for ``no3`` and
    ``only78`` those without 3s, or with only 7s and 8s."""
    if part == "hinton":
        return torch.arange(len(y_train)), torch.empty(0, dtype=torch.long)
    validation, rest = transfer_split(y_train, validation_size)
    if part == "schedule":
        return rest, validation
    keep = y_train[rest] != 3 if part == "no3" else (y_train[rest] == 7) | (y_train[rest] == 8)
    return rest[keep], validation


@dataclass(frozen=True)
class AnchorStack:
    """Student runs of one part, shape and number of epochs, trained together as one stack
    (:func:`kdlib.stacked.train_stacked`): every seed and kind at once."""

    runs: tuple[AnchorRun, ...]

    def row_id(self) -> str:
        """A name for progress reports (the rows keep their own ids)."""
        run = self.runs[0]
        return f"stack of {len(self.runs)}: {run.part}/h{'-'.join(map(str, run.hidden))}/e{run.epochs}"


def stacked_runs(runs: list[AnchorRun]) -> list[AnchorStack]:
    """``runs`` in stacks of one part, shape and number of epochs, in the order of their first run."""
    groups: dict[tuple[str, tuple[int, ...], int], list[AnchorRun]] = {}
    for run in runs:
        groups.setdefault((run.part, run.hidden, run.epochs), []).append(run)
    return [AnchorStack(tuple(group)) for group in groups.values()]


def train_students(stack: AnchorStack, scale: AnchorScale, data: tuple[Tensor, ...], teacher_train: Tensor,
                   teacher_test: Tensor) -> dict[str, dict[str, Any]]:
    """Train the students of ``stack`` and return their result rows, by row id."""
    x_train, y_train, x_test, y_test = data
    part, hidden = stack.runs[0].part, stack.runs[0].hidden
    keep, validation = transfer_set(part, y_train, scale.validation_size)
    soft = teacher_train[keep]  # one tensor: the stack keeps one copy of the teacher's logits
    models = [seeded(lambda: mlp(list(hidden)), run.seed) for run in stack.runs]
    curve = {"hinton": test_errors_callback(x_test, y_test),
             "schedule": test_errors_callback(x_train[validation], y_train[validation],
                                              "validation_errors")}.get(part)
    logs = train_stacked(models, x_train[keep], y_train[keep], [run.config() for run in stack.runs],
                         [soft if run.kind == "kd" else None for run in stack.runs], on_epoch=curve)
    return {run.row_id(): student_row(run, model, log, scale, data, teacher_train, teacher_test)
            for run, model, log in zip(stack.runs, models, logs)}


def student_row(run: AnchorRun, student: nn.Module, log: TrainLog, scale: AnchorScale,
                data: tuple[Tensor, ...], teacher_train: Tensor, teacher_test: Tensor) -> dict[str, Any]:
    """The result row of a trained student. A ``schedule`` student records its validation errors
    and their curve only (it exists to choose a schedule, so its test errors are not measured);
    Hinton's pair records its test curve and fidelity; the transfer-set students their bias
    shift, chosen on validation, and what it does."""
    x_train, y_train, x_test, y_test = data
    keep, validation = transfer_set(run.part, y_train, scale.validation_size)
    row: dict[str, Any] = {**asdict(run), "hidden": list(run.hidden), "config": run.config().to_dict(),
                           "transfer_size": len(keep), "train_wall_s": log.wall_s, "stack": dict(log.stack or {})}
    if run.part == "schedule":
        row.update(validation_errors=errors(predict_logits(student, x_train[validation]), y_train[validation]),
                   validation_size=len(validation), curve=log.history)
        return row
    test_logits = predict_logits(student, x_test)
    row["errors"] = errors(test_logits, y_test)
    if run.part == "hinton":
        train_logits = predict_logits(student, x_train)
        row.update(curve=log.history, **fidelity_fields((train_logits, teacher_train),
                                                        (test_logits, teacher_test)))
    else:
        classes, sign = PART_CLASSES[run.part]
        shift = best_shift(predict_logits(student, x_train[validation]), y_train[validation], classes, sign)
        after = shifted(test_logits, classes, shift)
        threes = y_test == 3
        row.update(shift=shift, shifted_errors=errors(after, y_test),
                   errors_on_3s=errors(test_logits[threes], y_test[threes]),
                   shifted_errors_on_3s=errors(after[threes], y_test[threes]),
                   margin_3=margins(test_logits[threes], 3), shifted_margin_3=margins(after[threes], 3))
    return row


MARGIN_BINS = tuple(float(b) for b in np.arange(-30.0, 30.01, 2.0))


def margins(logits: Tensor, cls: int) -> list[int]:
    """Histogram (over :data:`MARGIN_BINS`, clipped at the ends) of the logit of ``cls`` minus the
    largest other logit: positive where ``cls`` is predicted."""
    others = logits.clone()
    others[:, cls] = -math.inf
    margin = (logits[:, cls] - others.max(1).values).clamp(MARGIN_BINS[0], MARGIN_BINS[-1] - 1e-6)
    counts, _ = np.histogram(margin.numpy(), bins=MARGIN_BINS)
    return counts.tolist()


TEACHING = ("nokd", "fixed", "consistent")
"""Consistency: labels only; a fixed teacher (logits of un-augmented images, computed once); a
consistent teacher (run on the student's augmented batch at every step)."""


@dataclass(frozen=True)
class ConsistencyRun:
    """One CIFAR-10 student of the consistency part; its fields are its identity."""

    teaching: str
    patience: int  # the schedule: this many times chapter 8's reduced-set epochs
    seed: int
    part: str = "consistency"

    def __post_init__(self) -> None:
        if self.teaching not in TEACHING:
            raise ValueError(f"teaching must be one of {TEACHING}, got {self.teaching!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def row_id(self) -> str:
        return f"consistency/{self.teaching}/x{self.patience}/seed{self.seed}"


def cifar_scale(scale: AnchorScale):
    """Chapter 8's CIFAR-10 recipe (:data:`kdlib.experiments.algorithms.SCALES`) at the profile
    the anchors' scale names."""
    from kdlib.experiments import algorithms

    return algorithms.SCALES[scale.cifar_profile].cifar


def run_consistency_student(run: ConsistencyRun, scale: AnchorScale, teacher: nn.Module,
                            data: tuple[Tensor, ...]) -> dict[str, Any]:
    """Train one reduced-set student of chapter 8's recipe, taught as ``run.teaching`` says."""
    from dataclasses import replace

    from kdlib.experiments import cifar
    from kdlib.experiments.algorithms import REDUCED_ROW

    recipe = cifar_scale(scale)
    x_train, y_train, x_test, y_test = data
    keep = cifar.first_per_class(y_train, recipe.reduced_per_class)
    device = torch.device("cpu")
    row = replace(REDUCED_ROW, kd=run.teaching != "nokd")
    student = seeded(lambda: cifar.make_model(row.blocks, row.block, row.stride, recipe.width, device),
                     run.seed)
    config = cifar.train_config(recipe, recipe.reduced_epochs * run.patience, run.seed, kd=row.kd,
                                device=device)
    fixed = None
    if run.teaching == "fixed":
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.mixed_precision):
            fixed = predict_logits(teacher, x_train[keep], 500, cifar.plain()).float()
    log = train(student, x_train[keep], y_train[keep], config, batch_transform=cifar.augmenting(),
                teacher=teacher if run.teaching == "consistent" else None, teacher_logits=fixed)
    return {**asdict(run), "config": config.to_dict(), "train_size": len(keep),
            "accuracy": cifar.evaluate(student, x_test, y_test, recipe.flip_test),
            "train_wall_s": log.wall_s, "epoch_losses": log.epoch_losses}


def run_consistency(runs: list[ConsistencyRun], scale: AnchorScale, results: ResultFile,
                    budget, report, where: Rank) -> None:
    """The consistency part: chapter 8's CIFAR-10 teacher (trained once, or loaded from the
    checkpoint chapter 8's run made), then the planned students ``runs``."""
    from kdlib.data import load_cifar10
    from kdlib.experiments import cifar

    dataset = load_cifar10()
    results.use_data_source(dataset.source, key="cifar_data_source")
    recipe = cifar_scale(scale)
    data = cifar.subset(dataset, recipe)
    sub = ResultFile(None, "anchors-cifar-teacher", {})

    def make() -> nn.Module:
        return cifar.load_or_train_teacher(scale.cifar_profile, recipe, data, dataset.source, sub,
                                           torch.device("cpu"), progress=False)

    def build() -> nn.Module:
        return cifar.make_model(cifar.TEACHER_BLOCKS, "bottleneck", 1, recipe.width, torch.device("cpu"))

    teacher = one_for_all(make, build, where).eval()
    if where.is_main and not results.has("cifar_teacher"):
        results.put("cifar_teacher", {**sub.get("teacher"), "kind": "cifar_teacher"})
    run_rows(runs, lambda run: run_consistency_student(run, scale, teacher, data), results.put,
             budget.spent, where, report)


def run_anchors(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
                dataset: ImageDataset | None = None, command: str | None = None,
                time_budget_s: float | None = None, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Run (or resume) chapter 9's anchors at ``profile`` scale; returns the result data.

    With ``out`` the rows are saved as they finish and rows already there are not recomputed.
    ``time_budget_s``: start no new row after that many seconds (rerun to resume). ``parts``:
    the parts to run (:data:`PARTS`); the consistency part reads CIFAR-10.
    """
    from kdlib.experiments import TimeBudget
    from kdlib.profile import check_paper_on_cpu

    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}: the parts are {list(PARTS)}")
    scale = SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    check_paper_on_cpu(profile, "cpu", "anchors", None)
    where = rank()  # under torchrun: rank 0 writes the file, the rows are shared out
    recorded = {**asdict(scale), "teacher": {**TEACHER, "config": teacher_config(scale).to_dict()}}
    results = ResultFile(out if where.is_main else None, "anchors", new_provenance(command, profile=profile, scale=recorded,
                                                        dataset="MNIST", teacher=dict(TEACHER),
                                                        student=dict(STUDENT), kd=dict(KD),
                                                        parts=list(parts)))
    environment = results.run_provenance["environment"]
    environment["torch_threads"] = set_threads("stacked mlp")  # the students train in stacks
    environment["ranks"] = where.world
    if "consistency" in parts:
        from kdlib.threads import threads_for

        environment["cifar_torch_threads"] = threads_for("resnet")
    results.save()  # the file exists from the start, so that a second run can join it

    def pending() -> list[AnchorRun | ConsistencyRun]:
        """What is left to do, as rank 0 sees it (Hinton's pair only once its schedule is chosen)."""
        planned = planned_runs(scale, parts, chosen_epochs(scale, results.data["rows"]))
        return broadcast([run for run in planned if not results.has(run.row_id())], where)

    todo = pending()
    consistency = [run for run in todo if isinstance(run, ConsistencyRun)]
    todo = [run for run in todo if isinstance(run, AnchorRun)]
    mnist_teacher_needed = bool(todo) or (not results.has("teacher") and bool(set(parts) & set(MNIST_PARTS)))

    def describe(row: dict[str, Any]) -> str:
        for key, name in (("errors", "test errors"), ("validation_errors", "validation errors")):
            if key in row:
                return f"{row[key]} {name}"
        return f"accuracy {row['accuracy']:.4f}"

    def report(i: int, n: int, name: str, rows: dict[str, Any]) -> None:
        if progress:
            for row_id, row in (rows.items() if name.startswith("stack of") else [(name, rows)]):
                print(f"{i}/{n} {row_id}: {describe(row)}, {row['train_wall_s']:.0f} s", flush=True)

    def save(_: str, rows: dict[str, dict[str, Any]]) -> None:
        for row_id, row in rows.items():
            results.put(row_id, row)

    if broadcast(mnist_teacher_needed and not budget.spent(), where):
        dataset = dataset if dataset is not None else load_mnist()
        results.use_data_source(dataset.source)
        data = prepare_inputs(dataset, scale.train_size)
        teacher = one_for_all(lambda: load_or_train_teacher(scale, profile, data, dataset.source, results),
                              build_teacher, where).eval()
        teacher_train, teacher_test = predict_logits(teacher, data[0]), predict_logits(teacher, data[2])
        # two rounds: everything plannable, then Hinton's pair once its schedule rows exist
        while todo and not budget.spent():
            trained = run_rows(stacked_runs(todo), lambda stack: train_students(stack, scale, data, teacher_train,
                                                                                teacher_test),
                               save, budget.spent, where, report)
            todo = [run for run in pending() if isinstance(run, AnchorRun)]
            if not broadcast(trained, where):
                break
    if consistency and broadcast(not budget.spent(), where):
        set_threads("resnet")
        run_consistency(consistency, scale, results, budget, report, where)
    results.save()
    return results.data


CONSISTENCY_SETTINGS = ("cifar_profile", "cifar_seeds", "patience")
"""The scale settings the consistency part reads; the others belong to the MNIST parts."""


def is_consistency_row(row_id: str) -> bool:
    return row_id == "cifar_teacher" or row_id.startswith("consistency/")


def carry_over_consistency(source: Path | str, out: Path | str, source_label: str) -> int:
    """Copy the consistency part's rows (chapter 8's CIFAR-10 teacher, ``cifar_teacher``, and
    its students) from an earlier anchors result file ``source`` into the result file ``out``.

    For a change that touches only the MNIST parts (their teacher's schedule, say): rerunning the
    CIFAR-10 teacher and its 18 students would remake rows that nothing in the change reads. The
    two files must hold the same experiment at the same profile, from the same copy of CIFAR-10,
    with the same consistency settings (:data:`CONSISTENCY_SETTINGS`), and ``out`` must hold no
    consistency row yet; else :class:`kdlib.errors.UsageError`. The copy is recorded in
    ``out``'s provenance under ``carried_over``: ``source_label`` (where the rows came from, e.g.
    a file at a commit), the source's provenance and the ids of the rows, so that every row can
    still be traced to the run that made it; rows that ``source`` itself holds as carried over
    keep the provenance of the run that made them, and ``from`` names both files. Returns the
    number of rows copied."""
    from kdlib.errors import UsageError
    from kdlib.results import editing

    old = json.loads(Path(source).read_text())
    target = Path(out)
    with editing(target) as new:
        old_prov, new_prov = old["provenance"], new["provenance"]
        problems = []
        if old["experiment"] != new["experiment"]:
            problems.append(f"experiment {old['experiment']!r} against {new['experiment']!r}")
        for key in ("profile", "cifar_data_source"):
            if old_prov.get(key) != new_prov.get(key) and new_prov.get(key) is not None:
                problems.append(f"{key} {old_prov.get(key)!r} against {new_prov.get(key)!r}")
        for key in CONSISTENCY_SETTINGS:
            if old_prov["scale"].get(key) != new_prov["scale"].get(key):
                problems.append(f"{key} {old_prov['scale'].get(key)!r} against {new_prov['scale'].get(key)!r}")
        if any(is_consistency_row(row_id) for row_id in new["rows"]):
            problems.append(f"{target} already holds consistency rows")
        if problems:
            raise UsageError(f"cannot carry the consistency rows of {source} over: {'; '.join(problems)}. "
                             "Run the part instead: python -m kdlib.experiments anchors --profile "
                             f"{new_prov.get('profile')} --parts consistency --out {target}")
        rows = {k: v for k, v in old["rows"].items() if is_consistency_row(k)}
        new["rows"].update(rows)
        new_prov.setdefault("cifar_data_source", old_prov.get("cifar_data_source"))
        origin = old_prov.get("carried_over")
        if origin and set(rows) <= set(origin["rows"]):  # carried into the source in turn: keep their maker
            new_prov["carried_over"] = {**origin, "rows": sorted(rows),
                                        "from": f"{source_label}, carried there from {origin['from']}"}
        else:
            new_prov["carried_over"] = {"from": source_label, "parts": ["consistency"], "rows": sorted(rows),
                                        "provenance": old_prov, "resumed": old.get("resumed", [])}
    return len(rows)


def record_earlier_teacher(source: Path | str, out: Path | str, source_label: str) -> dict[str, Any]:
    """Note, in the provenance of the result file ``out`` (under ``earlier_teachers``), the MNIST
    teacher row of an earlier anchors result file ``source`` trained with the same recipe: its
    test errors, curve, training time and thread count, the machine and commit that made it, and
    ``source_label`` (where it came from, e.g. a file at a commit). A retrained teacher is not the
    same network on another machine or thread count; the earlier one shows how far two trainings
    of one recipe land apart. Refused (:class:`kdlib.errors.UsageError`) when the two teachers'
    recipes (architecture, regularisation, training config) differ. Returns the note."""
    from kdlib.errors import UsageError
    from kdlib.results import editing

    old = json.loads(Path(source).read_text())
    with editing(out) as new:
        recipe_old, recipe_new = (d["provenance"]["scale"]["teacher"] for d in (old, new))
        if recipe_old != recipe_new:
            raise UsageError(f"the teacher of {source} was trained with another recipe ({recipe_old}) than "
                             f"that of {out} ({recipe_new}): only a teacher of the same recipe is noted")
        row = old["rows"]["teacher"]
        note = {"from": source_label, "git_commit": old["provenance"].get("git_commit"),
                "environment": old["provenance"].get("environment"),
                **{k: row.get(k) for k in ("errors", "train_wall_s", "curve", "weights_sha256")},
                "torch_threads": row.get("torch_threads", old["provenance"]["environment"].get("torch_threads"))}
        new["provenance"].setdefault("earlier_teachers", []).append(note)
    return note


# ------------------------------------------------------------------------------------------------
# Tables for the chapter


load_published = partial(experiments.load_published, "anchors")
"""The committed full-profile result file of this experiment, parsed."""


def student_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One line per student run (fidelity flattened into columns where measured)."""
    rows = []
    for r in data["rows"].values():
        if r.get("kind") in ("teacher", "cifar_teacher"):
            continue
        line = {k: v for k, v in r.items() if not isinstance(v, (list, dict))}
        line["hidden"] = "-".join(map(str, r["hidden"])) if "hidden" in r else None
        for where in ("train", "test"):
            for k, v in r.get(f"fidelity_{where}", {}).items():
                line[f"{k}_{where}"] = v
        rows.append(line)
    return pd.DataFrame(rows)


def recorded_scale(data: dict[str, Any]) -> AnchorScale:
    """The scale a result file was made with (recorded in its provenance)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data["provenance"]["scale"].items()
              if k != "teacher"}
    return AnchorScale(**fields)


def recorded_parts(data: dict[str, Any]) -> tuple[str, ...]:
    """The parts the runs of a result file were asked for (all of them where a run does not say)."""
    runs = [data["provenance"], *data.get("resumed", [])]
    carried = data["provenance"].get("carried_over")
    runs += [carried] if carried else []
    asked = {part for run in runs for part in run.get("parts", PARTS)}
    return tuple(part for part in PARTS if part in asked)


def planned_frame(data: dict[str, Any]) -> pd.DataFrame:
    """:func:`student_frame` of a result file that holds every run its scale and parts plan; a
    missing one raises :class:`kdlib.experiments.MissingRows` with the command that makes it."""
    command = run_command("anchors", data)
    scale = recorded_scale(data)
    runs = planned_runs(scale, recorded_parts(data), chosen_epochs(scale, data["rows"]))
    planned_rows(data, [run.row_id() for run in runs], command)
    return student_frame(data)


def by_seed(frame: pd.DataFrame, part: str, kind: str, column: str, hidden: str = "800-800") -> pd.Series:
    rows = frame[(frame.part == part) & (frame.kind == kind) & (frame.hidden == hidden)]
    if rows.empty:
        raise KeyError(f"no {part}/{kind} rows with hidden {hidden} in the result file")
    return rows.set_index("seed")[column].sort_index()


def interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval of ``values`` (one value: the value, NaN bounds)."""
    values = values.astype(float)
    if len(values) < 2:
        return float(values.mean()), math.nan, math.nan
    gap = paired_gap(list(values), [0.0] * len(values))
    return gap.mean, gap.low, gap.high


def verdict(paper: float, low: float, high: float, null: float, higher_is_better: bool) -> str:
    """``reproduced`` when our interval reaches the paper's value (or beats it); ``same direction,
    smaller`` when it excludes the null value (what the comparison run gives) on the paper's
    side but falls short of the paper; ``not reproduced`` otherwise (an interval that includes
    the null value, or lies on its other side). No verdict from one seed, or when the comparison
    run itself already reaches the paper's value (then the landmark tests nothing here)."""
    if math.isnan(low):
        return "one seed: no verdict"
    sign = 1.0 if higher_is_better else -1.0
    if sign * (paper - null) <= 0:
        return "no verdict: the comparison run reaches the paper's value"
    best = high if higher_is_better else low
    worst = low if higher_is_better else high
    if sign * (worst - null) <= 0:
        return "not reproduced"
    return "reproduced" if sign * (best - paper) >= 0 else "same direction, smaller"


def direction_verdict(low: float, high: float) -> str:
    """For a landmark the paper states as a direction (an effect above zero): ``reproduced``
    when our interval lies above zero, ``opposite`` below it, ``not detected`` across it."""
    if math.isnan(low):
        return "one seed: no verdict"
    return "reproduced" if low > 0 else "opposite" if high < 0 else "not detected"


def landmarks(data: dict[str, Any], consistency: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Each landmark's effect: the paper's value, ours (mean, 95% interval over seeds), the null
    value it is judged against, and the verdict (:func:`verdict`, or :func:`direction_verdict`
    where the paper states a direction). ``consistency``: the students of the consistency
    landmark, in :func:`consistency_frame`'s form, when they come from another file (chapter 9
    reads them from the fast teacher's, :func:`kdlib.experiments.cifar_fast.consistency_frame`);
    ``None``: this file's consistency part, where it has one."""
    frame = planned_frame(data)
    parts = set(frame.part)
    out = []

    def add(name: str, paper: float | str, ours: pd.Series, null: float, higher: bool | None, unit: str) -> None:
        mean, low, high = interval(ours)
        judged = (direction_verdict(low, high) if higher is None
                  else verdict(float(paper), low, high, null, higher))
        out.append({"landmark": name, "paper": paper, "ours": mean, "low": low, "high": high,
                    "null": null, "seeds": len(ours), "unit": unit, "verdict": judged})

    if "hinton" in parts:
        alone, kd = by_seed(frame, "hinton", "nokd", "errors"), by_seed(frame, "hinton", "kd", "errors")
        paper_removed = 100 * (PAPER["student_errors"] - PAPER["distilled_errors"]) / PAPER["student_errors"]
        add("Hinton: errors removed by KD", paper_removed, 100 * (alone - kd) / alone, 0.0,
            True, "%")
    if "no3" in parts:
        mine = 100 * (1 - by_seed(frame, "no3", "kd", "shifted_errors_on_3s") / TEST_THREES)
        control = 100 * (1 - by_seed(frame, "no3", "nokd", "shifted_errors_on_3s") / TEST_THREES)
        paper3 = 100 * (1 - PAPER["no3_shifted_errors_on_3s"] / TEST_THREES)
        add("No 3s seen: test 3s recognised", paper3, mine, float(control.mean()), True, "%")
    if "only78" in parts:
        mine = 100 * by_seed(frame, "only78", "kd", "shifted_errors") / 10_000
        control = 100 * by_seed(frame, "only78", "nokd", "shifted_errors") / 10_000
        add("Only 7s and 8s: test error", PAPER["only78_shifted_error_pct"], mine,
            float(control.mean()), False, "%")
    if consistency is None and "consistency" in parts:
        consistency = frame[frame.part == "consistency"]
    if consistency is not None:
        longest = int(consistency.patience.max())
        consistent = consistency_by_seed(consistency, "consistent", longest)
        fixed = consistency_by_seed(consistency, "fixed", longest)
        add(f"Consistent minus fixed, {longest}x", "> 0", 100 * (consistent - fixed), 0.0,
            None, "points")
    return out


def consistency_by_seed(frame: pd.DataFrame, teaching: str, patience: int) -> pd.Series:
    rows = frame[(frame.part == "consistency") & (frame.teaching == teaching) & (frame.patience == patience)]
    if rows.empty:
        raise KeyError(f"no consistency/{teaching}/x{patience} rows in the result file")
    return rows.set_index("seed").accuracy.sort_index()


def consistency_frame(data: dict[str, Any]) -> pd.DataFrame:
    """The consistency part's students of an anchors result file (every planned one): one line
    each, with ``teaching``, ``patience``, ``seed`` and ``accuracy`` (a fraction)."""
    frame = planned_frame(data)
    return frame[frame.part == "consistency"]


def consistency_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per schedule: mean test accuracy (%) over seeds of each teaching, from students in
    :func:`consistency_frame`'s form (the paired gaps: :func:`consistency_gains`)."""
    lines = []
    for patience in sorted(set(frame[frame.part == "consistency"].patience.astype(int))):
        acc = {t: 100 * consistency_by_seed(frame, t, patience) for t in TEACHING}
        lines.append({"schedule": f"{patience}x", "labels %": round(acc["nokd"].mean(), 2),
                      "fixed %": round(acc["fixed"].mean(), 2),
                      "consistent %": round(acc["consistent"].mean(), 2)})
    return pd.DataFrame(lines)


def verdict_table(data: dict[str, Any], consistency: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`landmarks` as a narrow table for the page."""
    lines = []
    for m in landmarks(data, consistency):
        ours = f"{m['ours']:.1f}" if math.isnan(m["low"]) else f"{m['ours']:.1f} [{m['low']:.1f}, {m['high']:.1f}]"
        paper = m["paper"] if isinstance(m["paper"], str) else f"{m['paper']:.1f}"
        lines.append({"landmark": f"{m['landmark']} ({m['unit']})", "paper": paper, "ours [95% CI]": ours,
                      "null": f"{m['null']:.1f}", "verdict": m["verdict"]})
    return pd.DataFrame(lines)


def hinton_table(data: dict[str, Any]) -> pd.DataFrame:
    """Test errors of the teacher and the students beside Hinton et al.'s."""
    frame = planned_frame(data)
    teacher = data["rows"]["teacher"]["errors"]

    def cell(values: pd.Series) -> str:
        mean, low, high = interval(values)
        return f"{mean:.0f}" if math.isnan(low) else f"{mean:.0f} [{low:.0f}, {high:.0f}]"

    lines = [{"model": "teacher 1200-1200 (one seed)", "paper": PAPER["teacher_errors"], "ours": f"{teacher}"},
             {"model": "800-800, labels only", "paper": PAPER["student_errors"],
              "ours": cell(by_seed(frame, "hinton", "nokd", "errors"))},
             {"model": "800-800, KD at T = 20", "paper": PAPER["distilled_errors"],
              "ours": cell(by_seed(frame, "hinton", "kd", "errors"))}]
    self_kd = frame[(frame.part == "hinton") & (frame.hidden == "1200-1200")]
    if not self_kd.empty:
        lines.append({"model": "1200-1200, KD (self-distilled)", "paper": "-",
                      "ours": cell(self_kd.set_index("seed").errors.sort_index())})
    return pd.DataFrame(lines)


def interval_text(values: pd.Series, digits: int = 0) -> str:
    """``mean [low, high]`` (Student-t 95% over seeds), or the mean alone for one value."""
    mean, low, high = interval(values)
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


TRANSFER_MEASURES = {
    "errors": "test errors", "shifted_errors": "test errors, shifted",
    "errors_on_3s": "errors on the 1,010 test 3s", "shifted_errors_on_3s": "errors on 3s, shifted",
}


def transfer_table(data: dict[str, Any], part: str) -> pd.DataFrame:
    """The transfer-set experiment ``part``, one line per measure: the KD student and the
    labels-only control, mean and 95% interval over seeds (test errors before and after the bias
    shift chosen on validation), and the shifts chosen, seed by seed."""
    frame = planned_frame(data)
    measures = list(TRANSFER_MEASURES)[:2] if part == "only78" else list(TRANSFER_MEASURES)
    lines = []
    for column in measures:
        lines.append({"measure": TRANSFER_MEASURES[column],
                      **{name: interval_text(by_seed(frame, part, kind, column))
                         for kind, name in (("kd", "KD"), ("nokd", "labels only"))}})
    lines.append({"measure": "shift chosen, by seed",
                  **{name: ", ".join(f"{v:+g}" for v in by_seed(frame, part, kind, "shift"))
                     for kind, name in (("kd", "KD"), ("nokd", "labels only"))}})
    return pd.DataFrame(lines)


def schedule_table(data: dict[str, Any]) -> pd.DataFrame:
    """The schedules tried for Hinton's pair: per number of epochs, the validation errors (of
    :data:`AnchorScale.validation_size` images) of the seed-0 student of each kind, the chosen
    schedule of each kind marked with ``*`` (:func:`chosen_epochs`)."""
    frame = planned_frame(data)
    scale = recorded_scale(data)
    chosen = chosen_epochs(scale, data["rows"])
    rows = frame[frame.part == "schedule"].set_index(["kind", "epochs"]).validation_errors
    lines = []
    for epochs in scale.schedules:
        line: dict[str, Any] = {"epochs": epochs}
        for kind, name in (("kd", "KD"), ("nokd", "labels only")):
            mark = " *" if chosen.get(kind) == epochs else ""
            line[name] = f"{int(rows[(kind, epochs)])}{mark}"
        lines.append(line)
    return pd.DataFrame(lines)


@book_style
def plot_schedules(data: dict[str, Any]):
    """Validation errors after each epoch of the seed-0 students that chose Hinton's schedules:
    one line per kind and schedule (the longest schedule drawn darkest)."""
    import matplotlib.pyplot as plt

    scale = recorded_scale(data)
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.2))
    shades = np.linspace(0.35, 1.0, len(scale.schedules))
    for kind, name, colour in (("kd", "KD", plt.cm.Blues), ("nokd", "labels only", plt.cm.Oranges)):
        for shade, epochs in zip(shades, scale.schedules):
            row = data["rows"][AnchorRun("schedule", kind, 0, epochs).row_id()]
            ax.plot([p["epoch"] for p in row["curve"]], [p["validation_errors"] for p in row["curve"]],
                    color=colour(shade), label=f"{name}, {epochs} epochs")
    ax.set(xlabel="epoch", ylabel=f"validation errors (of {scale.validation_size:,})", yscale="log",
           xscale="log")
    legend_below(fig)
    return fig


def fidelity_table(data: dict[str, Any]) -> pd.DataFrame:
    """Part 1's students: test errors, agreement with the teacher (%) and KL(teacher || student)
    (nats, at T = 1), on training and test images, mean over seeds."""
    frame = planned_frame(data)
    rows = frame[frame.part == "hinton"].copy()
    rows["student"] = rows.hidden + ", " + rows.kind.map({"kd": "KD", "nokd": "labels only"})
    table = rows.groupby("student")[["errors", "agreement_train", "agreement_test", "kl_train", "kl_test"]].mean()
    table[["agreement_train", "agreement_test"]] *= 100
    table = table.round({"errors": 0, "agreement_train": 2, "agreement_test": 2, "kl_train": 4, "kl_test": 4})
    table["errors"] = table["errors"].astype(int)
    return table.rename(columns={"errors": "test errors", "agreement_train": "agree % (train)",
                                 "agreement_test": "agree % (test)", "kl_train": "KL (train)",
                                 "kl_test": "KL (test)"}).reset_index()


GAIN_COLUMN = "points [95% CI]"


def consistency_gains(frame: pd.DataFrame) -> pd.DataFrame:
    """Consistency, one line per comparison and schedule (``comparison``, e.g. ``"fixed - labels,
    1x"``): the paired gap in accuracy points with its 95% interval (``points [95% CI]``; each
    teacher against labels only, consistent against fixed), and the change of each from the
    shortest schedule to the longest one; from students in :func:`consistency_frame`'s form. Two
    narrow columns, for a phone's width."""
    patience = sorted(set(frame[frame.part == "consistency"].patience.astype(int)))
    acc = {(t, p): 100 * consistency_by_seed(frame, t, p) for t in TEACHING for p in patience}
    lines = []
    for treated, baseline, name in (("fixed", "nokd", "fixed - labels"), ("consistent", "nokd", "consistent - labels"),
                                    ("consistent", "fixed", "consistent - fixed")):
        for p in patience:
            gap = paired_gap(list(acc[(treated, p)]), list(acc[(baseline, p)]))
            lines.append({"comparison": f"{name}, {p}x", GAIN_COLUMN: str(gap)})
    first, last = patience[0], patience[-1]
    for teaching, name in (("nokd", "labels"), ("fixed", "fixed"), ("consistent", "consistent")):
        change = paired_gap(list(acc[(teaching, last)]), list(acc[(teaching, first)]))
        lines.append({"comparison": f"{name}: {last}x - {first}x", GAIN_COLUMN: str(change)})
    for teaching, name in (("fixed", "fixed gain"), ("consistent", "consistent gain")):
        gain_last = acc[(teaching, last)] - acc[("nokd", last)]
        gain_first = acc[(teaching, first)] - acc[("nokd", first)]
        change = paired_gap(list(gain_last), list(gain_first))
        lines.append({"comparison": f"{name}: {last}x - {first}x", GAIN_COLUMN: str(change)})
    return pd.DataFrame(lines)


@book_style
def plot_curves(data: dict[str, Any]):
    """Test errors after each epoch: the teacher and one seed of each 800-800 student."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.2))
    ax.plot([p["epoch"] for p in data["rows"]["teacher"]["curve"]],
            [p["test_errors"] for p in data["rows"]["teacher"]["curve"]], label="teacher", color="black")
    for r in data["rows"].values():
        if r.get("part") == "hinton" and r["seed"] == 0 and r["hidden"] == [800, 800]:
            label = "800-800, KD" if r["kind"] == "kd" else "800-800, labels only"
            ax.plot([p["epoch"] for p in r["curve"]], [p["test_errors"] for p in r["curve"]], label=label)
    ax.set(xlabel="epoch", ylabel="test errors (of 10,000)", yscale="log")
    legend_below(fig)
    return fig


@book_style
def plot_margins(data: dict[str, Any], seed: int = 0):
    """The test 3s' margin (logit of 3 minus the largest other) for the no-3 KD student of
    ``seed``, before and after the bias shift."""
    import matplotlib.pyplot as plt

    row = next(r for r in data["rows"].values()
               if r.get("part") == "no3" and r["kind"] == "kd" and r["seed"] == seed)
    centres = [(a + b) / 2 for a, b in zip(MARGIN_BINS[:-1], MARGIN_BINS[1:])]
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.0))
    ax.bar(centres, row["margin_3"], width=1.8, alpha=0.6, label="before the shift")
    ax.bar(centres, row["shifted_margin_3"], width=1.8, alpha=0.6,
           label=f"after raising the bias of 3 by {row['shift']:g}")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(xlabel="logit of 3 minus the largest other logit", ylabel="test 3s")
    legend_below(fig)
    return fig
