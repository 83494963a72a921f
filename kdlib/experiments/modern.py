"""Chapter 10's measurement: distillation after Hinton, measured the way the field rarely does.

Decoupled KD, DIST and KD on standardized logits (the logit methods every current paper compares
against) and similarity-preserving KD (a relational feature method) are set beside Hinton's KD
and beside labels alone, on chapter 7's MNIST setting where KD helps (1,000 labelled images,
784-300-10 students, chapter 7's recipe), with:

* **hyper-parameters chosen on a validation split** of the training images (10,000 images that
  neither the teacher nor any student trains on), by the mean validation accuracy at the last
  epoch over :data:`SELECTION_SEEDS`; the test set chooses nothing;
* the **last epoch's test accuracy** reported, over paired seeds (every method's student of a
  seed starts from the same weights and sees the batches in the same order);
* beside it, the same runs scored **the usual way**: the best test accuracy over all epochs, a
  choice made on the test set, to show how much that selection inflates each number and gain.

Each candidate setting of each method is a :class:`ModernRun` of phase ``"select"``; once the
selection rows are in the file, the chosen setting of each method is trained with the final
seeds (phase ``"final"``). A row records its test and validation accuracy after every epoch.

    python -m kdlib.experiments modern --profile full    # results/modern_full.json

The teacher is chapter 7's "5 epochs" recipe (784-1200-1200-10) trained on the 50,000 images
outside the validation split. The CIFAR-10 part of chapter 10, on the fast recipe's teacher
(:mod:`kdlib.fastnet`), is planned beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kdlib.checkpoints import record_teacher
from kdlib.data import ImageDataset, balanced_subset, load_mnist, normalize
from kdlib.distributed import broadcast, one_for_all, rank, run_rows
from kdlib.experiments import planned_rows, run_command, start_results
from kdlib.experiments.mnist import cached_teacher
from kdlib.experiments.regimes import TEACHERS
from kdlib.figures import COLUMN_INCHES, book_style, legend_below
from kdlib.methods import DISTTerm, DKDTerm, KDTerm, LabelTerm, SPTerm, StandardizedKDTerm
from kdlib.models import mlp, seeded
from kdlib.profile import check_profile
from kdlib.results import ResultFile
from kdlib.stats import PairedGap, paired_gap
from kdlib.terms import Term
from kdlib.threads import set_threads
from kdlib.train import TrainConfig, accuracy, predict_logits, train

EXPERIMENT = "modern"
TEACHER = TEACHERS["5 epochs"]
VALIDATION_SIZE = 10_000
STUDENT_HIDDEN = 300
SP_PAIR = ("2", "5")  # the student's hidden ReLU and the teacher's last hidden ReLU (mlp's module names)

CANDIDATES: dict[str, tuple[dict[str, float], ...]] = {
    "labels": ({},),
    "kd": ({"temperature": 4.0},),
    "dkd": ({"beta": 2.0}, {"beta": 8.0}),
    "dist": ({"beta": 1.0}, {"beta": 2.0}),
    "kd-std": ({"temperature": 2.0}, {"temperature": 4.0}),
    "sp": ({"weight": 30.0}, {"weight": 300.0}, {"weight": 3000.0}),
}
"""Each method's candidate settings (the papers' defaults among them: DKD's beta 8 on
CIFAR-100, DIST's 1 and 2, logit standardization's base temperature 2, SP's weight 3000)."""

CIFAR_METHODS = ("labels", "kd", "dkd", "dist", "kd-std")
"""The methods of the CIFAR-10 part (:mod:`kdlib.experiments.modern_cifar`): the logit methods,
which distil from the teacher's logits cached per view; SP reads the teacher's feature maps of
each augmented batch, so it is measured on MNIST only."""
CIFAR_CANDIDATES = {**{m: CANDIDATES[m] for m in CIFAR_METHODS},
                    "dist": ({"beta": 1.0}, {"beta": 1.0, "warmup": 0.2}, {"beta": 0.1, "warmup": 0.2})}
"""On CIFAR-10, DIST also gets DKD's warm-up (its weight ramped up over the first fifth of the
steps) and a tenth of the paper's weight: at the fast recipe's learning rate (1.5), the paper's
unchanged setting diverged in the quick profile (a correlation's gradient grows as its spread
shrinks, and a fresh student's outputs are near uniform)."""
CANDIDATES_OF = {"modern": CANDIDATES, "modern-cifar10": CIFAR_CANDIDATES}
"""Each experiment's methods and their candidate settings."""

METHOD_NAMES = {"labels": "labels only", "kd": "KD (Hinton et al.)", "dkd": "DKD (Zhao et al.)",
                "dist": "DIST (Huang et al.)", "kd-std": "KD + logit std. (Sun et al.)",
                "sp": "SP (Tung & Mori)"}
PAPER_CIFAR100 = {"kd": 73.33, "dkd": 76.32, "dist": 76.31, "kd-std": 76.62}
"""The papers' CIFAR-100 numbers for resnet32x4 -> resnet8x4 (mdistiller's KD and DKD, DIST's
paper, Sun et al.'s KD with logit standardization): another dataset and other networks, quoted
for the size of the gains the papers claim over KD (about 3 points)."""


@dataclass(frozen=True)
class ModernScale:
    """How big a run is in a profile."""

    labelled: int
    final_seeds: tuple[int, ...]
    selection_seeds: tuple[int, ...]
    steps: int  # about this many student steps (epochs = steps / batches per epoch, at least 3)
    batch_size: int = 32


SCALES = {
    "quick": ModernScale(labelled=1_000, final_seeds=(0, 1), selection_seeds=(100,), steps=100),
    "full": ModernScale(labelled=1_000, final_seeds=(0, 1, 2, 3, 4), selection_seeds=(100, 101), steps=1_500),
    "paper": ModernScale(labelled=1_000, final_seeds=tuple(range(10)), selection_seeds=(100, 101, 102),
                         steps=1_500),
}


@dataclass(frozen=True)
class ModernRun:
    """One student: a method with one of its settings, a phase (``"select"`` or ``"final"``) and
    a seed; its row id comes from these."""

    method: str
    setting: tuple[tuple[str, float], ...]
    phase: str
    seed: int

    def row_id(self) -> str:
        values = ",".join(f"{k}={v:g}" for k, v in self.setting) or "default"
        return f"{self.method}/{values}/{self.phase}/seed{self.seed}"


def settings(method: str, candidates: dict[str, Any] = CANDIDATES) -> list[tuple[tuple[str, float], ...]]:
    return [tuple(sorted(candidate.items())) for candidate in candidates[method]]


def choices(candidates: dict[str, tuple[dict[str, float], ...]]) -> list[str]:
    """The methods with more than one candidate setting: only they have selection runs."""
    return [method for method, options in candidates.items() if len(options) > 1]


def epochs_for(scale: ModernScale) -> int:
    per_epoch = -(-scale.labelled // scale.batch_size)
    return max(3, round(scale.steps / per_epoch))


def terms_for(method: str, setting: dict[str, float], steps: int, label_smoothing: float = 0.0) -> list[Term]:
    """The loss of each method: labels only; Hinton's KD as chapters 5 and 7 use it (label weight
    0.5, T = 4); DKD, DIST and SP as their papers add them to a cross-entropy of weight 1; KD on
    standardized logits with KD's weights. Every label term smooths by ``label_smoothing`` (the
    CIFAR-10 recipe's 0.2: the recipe stays fixed, only the distillation term changes)."""
    def labels(weight: float = 1.0) -> LabelTerm:
        return LabelTerm(weight=weight, label_smoothing=label_smoothing)

    if method == "labels":
        return [labels()]
    if method == "kd":
        return [KDTerm(weight=0.5, temperature=setting["temperature"]), labels(0.5)]
    if method == "kd-std":
        return [StandardizedKDTerm(weight=0.5, temperature=setting["temperature"]), labels(0.5)]
    if method == "dkd":  # alpha 1, T 4; the weight ramps up over the first fifth of training
        return [labels(), DKDTerm(alpha=1.0, beta=setting["beta"], temperature=4.0, warmup_steps=steps // 5)]
    if method == "dist":  # "warmup": a fraction of the steps (kdlib's option, not the paper's)
        return [labels(), DISTTerm(beta=setting["beta"], gamma=setting["beta"], temperature=4.0,
                                   warmup_steps=int(setting.get("warmup", 0) * steps))]
    if method == "sp":
        return [labels(), SPTerm([SP_PAIR], weight=setting["weight"])]
    raise ValueError(f"unknown method {method!r}: the methods are {', '.join(CANDIDATES)}")


@dataclass
class Split:
    """The data of the experiment: the labelled training images, the validation split, the test
    set (normalised floats), and the teacher's training images (every image outside validation)."""

    x_labelled: Tensor
    y_labelled: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    x_teacher: Tensor
    y_teacher: Tensor
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def split(dataset: ImageDataset, scale: ModernScale) -> Split:
    """Validation: :data:`VALIDATION_SIZE` images of a fixed random permutation (seed 0); the
    labelled set: a class-balanced random subset (seed 0) of the other images."""
    x = normalize(dataset.train_images, dataset.mean, dataset.std)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    val, rest = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    labelled = rest[balanced_subset(dataset.train_labels[rest], scale.labelled, seed=0)]
    return Split(x[labelled], dataset.train_labels[labelled], x[val], dataset.train_labels[val],
                 normalize(dataset.test_images, dataset.mean, dataset.std), dataset.test_labels,
                 x[rest], dataset.train_labels[rest], dataset.source)


def run_student(run: ModernRun, scale: ModernScale, data: Split, teacher: torch.nn.Module,
                soft: Tensor) -> dict[str, Any]:
    """Train one student; its row, with the test and validation accuracy after every epoch."""
    epochs = epochs_for(scale)
    steps = epochs * -(-len(data.x_labelled) // scale.batch_size)
    setting = dict(run.setting)
    terms = terms_for(run.method, setting, steps)
    config = TrainConfig(epochs=epochs, batch_size=scale.batch_size, lr=0.02, lr_schedule="cosine", seed=run.seed)
    curve: list[dict[str, float]] = []

    def measure(epoch: int, model: torch.nn.Module) -> dict[str, float]:
        curve.append({"epoch": epoch, "test": accuracy(model, data.x_test, data.y_test),
                      "validation": accuracy(model, data.x_val, data.y_val)})
        return {}

    student = seeded(lambda: mlp([STUDENT_HIDDEN]), run.seed)
    needs_teacher_run = run.method == "sp"  # SP reads the teacher's feature maps on each batch
    log = train(student, data.x_labelled, data.y_labelled, config, terms=terms, on_epoch=measure,
                teacher=teacher if needs_teacher_run else None,
                teacher_logits=None if needs_teacher_run or run.method == "labels" else soft)
    return {**asdict(run), "setting": setting, "config": config.to_dict(), "terms": [repr(t) for t in terms],
            "accuracy": curve[-1]["test"], "accuracy_best_epoch": max(c["test"] for c in curve),
            "validation_accuracy": curve[-1]["validation"], "curve": curve,
            "train_accuracy": log.train_accuracy, "train_wall_s": log.wall_s}


def logit_summary(logits: Tensor, labels: Tensor) -> dict[str, list[float]]:
    """What chapter 10 plots of the teacher's logits on the labelled images: per image, the
    teacher's non-target probability mass ``1 - p_t`` at T = 1 and T = 4 (DKD's weight of the
    non-target part inside KD) and the standard deviation of its logits (what standardization
    divides by), rounded to 5 decimals."""
    out = {}
    for t in (1.0, 4.0):
        p_target = (logits.float() / t).softmax(1).gather(1, labels[:, None]).squeeze(1)
        out[f"non_target_mass_T{t:g}"] = [round(float(v), 5) for v in (1 - p_target)]
    out["logit_std"] = [round(float(v), 5) for v in logits.float().std(dim=1)]
    return out


def selection_runs(scale: ModernScale, candidates: dict[str, Any] = CANDIDATES) -> list[ModernRun]:
    return [ModernRun(method, setting, "select", seed) for method in choices(candidates)
            for setting in settings(method, candidates) for seed in scale.selection_seeds]


def chosen_settings(data: dict[str, Any], scale: Any) -> dict[str, tuple[tuple[str, float], ...]]:
    """Each method's setting with the best mean validation accuracy at the last epoch over the
    selection seeds (the first candidate wins a tie; a method with one candidate has no choice)."""
    command = run_command(data["experiment"], data)
    candidates = CANDIDATES_OF[data["experiment"]]
    chosen = {method: settings(method, candidates)[0] for method in candidates}
    for method in choices(candidates):
        def mean_validation(setting: tuple[tuple[str, float], ...]) -> float:
            ids = [ModernRun(method, setting, "select", s).row_id() for s in scale.selection_seeds]
            rows = planned_rows(data, ids, command)
            return sum(r["validation_accuracy"] for r in rows) / len(rows)

        chosen[method] = max(settings(method, candidates), key=mean_validation)
    return chosen


def final_runs(data: dict[str, Any], scale: Any) -> list[ModernRun]:
    return [ModernRun(method, setting, "final", seed) for method, setting in chosen_settings(data, scale).items()
            for seed in scale.final_seeds]


def run_modern(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
               dataset: ImageDataset | None = None, command: str | None = None,
               time_budget_s: float | None = None) -> dict[str, Any]:
    """Run (or resume) the experiment at ``profile`` scale: the teacher, the selection rows, then
    the final rows of each method's chosen setting; returns the result data."""
    from kdlib.experiments import TimeBudget

    scale = SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    where = rank()
    dataset = dataset if dataset is not None else load_mnist()
    results = start_results(out, EXPERIMENT, command, profile, scale, "MNIST", dataset.source, set_threads("mlp"))
    data = split(dataset, scale)

    def make_teacher() -> torch.nn.Module:
        teacher, info = cached_teacher(data.x_teacher, data.y_teacher, 0, TEACHER, dataset.source,
                                       experiment="modern-teacher", validation=VALIDATION_SIZE)
        record_teacher(results, "teacher", teacher, lambda: {
            "kind": "teacher", "recipe": TEACHER.name, **TEACHER.training_key(), **info,
            "accuracy": accuracy(teacher, data.x_test, data.y_test),
            "validation_accuracy": accuracy(teacher, data.x_val, data.y_val)}, ("accuracy", 5e-4))
        return teacher

    teacher = one_for_all(make_teacher, lambda: mlp(list(TEACHER.hidden), dropout=TEACHER.dropout), where).eval()
    soft = predict_logits(teacher, data.x_labelled)
    if where.is_main and "teacher_logits" not in results.data:
        results.set("teacher_logits", logit_summary(soft, data.y_labelled))

    run_phases(results, scale, lambda run: run_student(run, scale, data, teacher, soft), budget.spent, where,
               progress)
    return results.data


def run_phases(results: ResultFile, scale: Any, train_one: Callable[[ModernRun], dict[str, Any]],
               stop: Callable[[], bool], where: Any, progress: bool) -> None:
    """The two phases of a measurement: the selection rows of the methods that have a choice,
    then the final rows of each method's chosen setting (once every selection row is in), then
    save. Rows already in the file are kept (rerun to resume)."""
    candidates = CANDIDATES_OF[results.data["experiment"]]

    def report(i: int, n: int, row_id: str, row: dict[str, Any]) -> None:
        if progress:
            print(f"{i}/{n} {row_id}: test {row['accuracy']:.4f} (best epoch {row['accuracy_best_epoch']:.4f}), "
                  f"validation {row['validation_accuracy']:.4f}", flush=True)

    for phase in ("select", "final"):
        planned = selection_runs(scale, candidates) if phase == "select" else (
            final_runs(results.data, scale) if where.is_main else [])
        todo = broadcast([r for r in planned if not results.has(r.row_id())] if where.is_main else [], where)
        if phase == "final" and broadcast(
                not all(results.has(r.row_id()) for r in selection_runs(scale, candidates))
                if where.is_main else None, where):
            break  # the time budget stopped the selection: rerun to resume
        run_rows(todo, train_one, results.put, stop, where, report)
    results.save()


# ------------------------------------------------------------------------------------------------
# Tables for the chapter


def load_published(experiment: str = EXPERIMENT) -> dict[str, Any]:
    """The published result file of ``experiment`` (``"modern"``, MNIST, or ``"modern-cifar10"``)."""
    from kdlib.experiments import load_published as load

    return load(experiment)


@dataclass(frozen=True)
class Seeds:
    """The seeds a result file's scale records."""

    final_seeds: tuple[int, ...]
    selection_seeds: tuple[int, ...]


def scale_of(data: dict[str, Any]) -> Seeds:
    recorded = data["provenance"]["scale"]
    return Seeds(tuple(recorded["final_seeds"]), tuple(recorded["selection_seeds"]))


def final_rows(data: dict[str, Any], method: str) -> list[dict[str, Any]]:
    scale = scale_of(data)
    setting = chosen_settings(data, scale)[method]
    ids = [ModernRun(method, setting, "final", s).row_id() for s in scale.final_seeds]
    return planned_rows(data, ids, run_command(data["experiment"], data))


def verdict_table(data: dict[str, Any]) -> pd.DataFrame:
    """Per method: the chosen setting, the last-epoch test accuracy (mean over the final seeds),
    the paired gap against KD scored at the last epoch and scored as the best epoch, and how
    much the best-epoch scoring inflates the method's own accuracy."""
    kd = final_rows(data, "kd")
    lines = []
    for method in CANDIDATES_OF[data["experiment"]]:
        rows = final_rows(data, method)
        last = [100 * r["accuracy"] for r in rows]
        best = [100 * r["accuracy_best_epoch"] for r in rows]
        entry = {"method": METHOD_NAMES[method],
                 "chosen": ", ".join(f"{k} {v:g}" for k, v in rows[0]["setting"].items()) or "-",
                 "test % (last epoch)": sum(last) / len(last)}
        if method != "kd":
            entry["vs KD, last epoch"] = paired_gap(last, [100 * r["accuracy"] for r in kd])
            entry["vs KD, best epoch"] = paired_gap(best, [100 * r["accuracy_best_epoch"] for r in kd])
        entry["best minus last"] = paired_gap(best, last)
        entry["paper (CIFAR-100)"] = PAPER_CIFAR100.get(method)
        lines.append(entry)
    return pd.DataFrame(lines)


def collapsed(data: dict[str, Any], chance: float = 0.1, margin: float = 0.05) -> list[str]:
    """The selection rows whose students ended near chance (test accuracy below ``chance +
    margin``): a paper's weight used unchanged at this scale, say."""
    return [row_id for row_id, row in data["rows"].items()
            if row.get("phase") == "select" and row["accuracy"] < chance + margin]


def curve_frame(data: dict[str, Any]) -> pd.DataFrame:
    """Test accuracy (%) after each epoch of every final row: columns method, seed, epoch, test."""
    lines = [{"method": method, "seed": row["seed"], "epoch": point["epoch"], "test": 100 * point["test"]}
             for method in CANDIDATES_OF[data["experiment"]] for row in final_rows(data, method)
             for point in row["curve"]]
    return pd.DataFrame(lines)


def plateau_spread(data: dict[str, Any], last: int) -> pd.DataFrame:
    """Per method: how much the test accuracy of a final row moves over its ``last`` epochs (the
    standard deviation of those epochs' accuracies around their mean, averaged over seeds), and
    how much the best of those epochs beats the last (mean over seeds), in points."""
    frame = curve_frame(data)
    lines = []
    for method, group in frame.groupby("method", sort=False):
        tails = [g.sort_values("epoch").test.to_numpy()[-last:] for _, g in group.groupby("seed")]
        lines.append({"method": METHOD_NAMES[method], "spread": float(np.mean([t.std(ddof=1) for t in tails])),
                      "best minus last": float(np.mean([t.max() - t[-1] for t in tails]))})
    return pd.DataFrame(lines)


@book_style
def plot_teacher_logits(data: dict[str, Any]):
    """The teacher's logits on the labelled images: the non-target mass ``1 - p_t`` at T = 1 and
    T = 4 (the factor DKD says KD puts on its non-target part), and the spread of each image's
    logits (what logit standardization divides by)."""
    import matplotlib.pyplot as plt

    summary = data["teacher_logits"]
    fig, (mass, spread) = plt.subplots(1, 2, figsize=(COLUMN_INCHES, 2.8))
    floor = 1e-5  # the file rounds to 5 decimals: smaller values are counted in the first bin
    bins = np.logspace(-5, 0, 26)
    for t in ("1", "4"):
        values = np.clip(summary[f"non_target_mass_T{t}"], floor, 1)
        mass.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"T = {t}")
    mass.set(xscale="log", xlabel="1 - p_t (first bin: <= 1e-5)", ylabel="labelled images")
    spread.hist(summary["logit_std"], bins=30, color="grey")
    spread.set(xlabel="std of its 10 logits", ylabel="labelled images")
    legend_below(fig, mass)
    return fig


@book_style
def plot_curves(data: dict[str, Any], title: str):
    """Mean test accuracy over the final seeds after each epoch, one line per method."""
    import matplotlib.pyplot as plt

    frame = curve_frame(data).groupby(["method", "epoch"], sort=False).test.mean().reset_index()
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.2))
    for method, group in frame.groupby("method", sort=False):
        ax.plot(group.epoch, group.test, label=METHOD_NAMES[method], marker="." if len(group) < 12 else None)
    top = frame.test.max()
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=title, ylim=(max(frame.test.min(), top - 15), top + 0.5))
    legend_below(fig, ncols=2)
    return fig


def gap_text(gap: PairedGap) -> str:
    return f"{gap.mean:+.2f} [{gap.low:+.2f}, {gap.high:+.2f}]"


__all__ = ["CANDIDATES", "CANDIDATES_OF", "ModernRun", "SCALES", "chosen_settings", "collapsed", "curve_frame",
           "load_published", "plateau_spread", "plot_curves", "plot_teacher_logits", "run_modern", "terms_for",
           "verdict_table"]
