"""Table 1 of the report: MNIST, a 784-1200-1200-10 teacher distilled into one-hidden-layer students.

Each row of the table is a :class:`StudentSpec` (hidden width, temperature, epochs, batch size).
For every seed the runner trains the teacher once, precomputes its logits on the training set
(offline distillation: the teacher is frozen), then trains

* the nine students of Table 1 with the distillation loss (``kind="kd"``),
* the same students on the hard labels alone (``kind="nokd"``; rows that differ only in
  temperature share one such run, since temperature then plays no part),
* one student on the teacher's outputs alone, with no ground-truth label (``kind="labelfree"``).

Every run is a row of a resumable result file (:class:`kdlib.results.ResultFile`). The students
of one width, number of epochs and batch size, whatever their kind, temperature or seed, are
trained together as one stack (:mod:`kdlib.stacked`; :func:`stacked_runs`), or one at a time,
each a stack of its own, with ``stacked=False``: a student's row is the same either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

import kdlib
from kdlib.augment import random_shift
from kdlib.checkpoints import cached_model, record_teacher
from kdlib.bench import cost_ratios, inference_cost
from kdlib.data import ImageDataset, balanced_subset, load_mnist, normalize
from kdlib.distributed import broadcast, rank, run_rows
from kdlib import experiments
from kdlib.experiments import KD_LABEL_WEIGHT, planned_rows, require_fidelity, run_command, published_file
from kdlib.fidelity import fidelity_fields
from kdlib.figures import COLUMN_INCHES, book_style, legend_below
from kdlib.models import mlp, seeded
from kdlib.profile import check_profile
from kdlib.threads import exactly, set_threads, threads_for
from kdlib.results import ResultFile, new_provenance
from kdlib.stats import paired_gap
from kdlib.stacked import train_stacked
from kdlib.train import TrainConfig, TrainLog, accuracy, make_optimizer, predict_logits, train


@dataclass(frozen=True)
class StudentSpec:
    """One row of Table 1: a student ``784-hidden-10`` and how it is distilled."""

    hidden: int
    temperature: float
    epochs: int
    batch_size: int

    def row_id(self, kind: str, seed: int) -> str:
        """The run's key in the result file: every setting that changes the trained student."""
        config = student_config(self, seed, kind)
        temperature = "" if kind == "nokd" else f"_T{config.temperature:g}"
        return (f"{kind}/h{self.hidden}{temperature}_e{config.epochs}_b{config.batch_size}_lr{config.lr:g}"
                f"_w{config.label_weight:g}/seed{seed}")


# The nine rows of Table 1, in the report's order.
TABLE1: tuple[StudentSpec, ...] = (
    StudentSpec(50, 3.5, 3, 32),
    StudentSpec(300, 3.5, 3, 16),
    StudentSpec(300, 3.5, 3, 64),
    StudentSpec(300, 3.5, 2, 32),
    StudentSpec(300, 10.0, 3, 32),
    StudentSpec(300, 1.0, 3, 32),
    StudentSpec(300, 3.5, 3, 32),
    StudentSpec(300, 3.5, 5, 32),
    StudentSpec(600, 3.5, 3, 32),
)
LABEL_FREE = StudentSpec(300, 3.5, 3, 32)
# The report's teacher accuracy (its section 3.1 text; Table 1 lists the students only).
REPORTED_TEACHER_ACCURACY_PCT = 97.41

TEACHER_HIDDEN = (1200, 1200)
TEACHER_DROPOUT = 0.2
# The teacher: 1 epoch at batch size 32, as in the report. SGD with Nesterov momentum, a cosine
# learning-rate decay and dropout 0.2 reach the report's 97.4% in that single epoch.
TEACHER_CONFIG = TrainConfig(epochs=1, batch_size=32, lr=0.02, lr_schedule="cosine")


@dataclass(frozen=True)
class TeacherRecipe:
    """How an MNIST teacher is made: architecture, training configuration, augmentation, data.

    ``shift``: random shifts of up to that many pixels during training (Hinton et al.'s
    "jitter"); ``train_size``: train on a class-balanced random subset of that size (None: all);
    ``sharpen``: the teacher's logits are multiplied by this factor when it teaches (above 1: the
    same predictions, over-confident probabilities).
    """

    name: str
    hidden: tuple[int, ...] = TEACHER_HIDDEN
    dropout: float = TEACHER_DROPOUT
    config: TrainConfig = TEACHER_CONFIG
    shift: int = 0
    train_size: int | None = None
    sharpen: float = 1.0

    def training_key(self) -> dict[str, Any]:
        """Everything that determines the trained weights (not the name, not ``sharpen``)."""
        return {"hidden": list(self.hidden), "dropout": self.dropout, "config": self.config.to_dict(),
                "shift": self.shift, "train_size": self.train_size}


REPORT_TEACHER = TeacherRecipe("report (1 epoch)")
# Students: the same optimiser; label_weight = 0.5 weighs hard labels and teacher equally.
STUDENT_LR = 0.02
STUDENT_LABEL_WEIGHT = KD_LABEL_WEIGHT


@dataclass(frozen=True)
class MnistScale:
    """How big an MNIST run is in a profile."""

    train_size: int | None  # None: all 60,000 training images
    seeds: tuple[int, ...]
    timing_repeats: int = 200


SCALES: dict[str, MnistScale] = {
    "quick": MnistScale(train_size=10_000, seeds=(0,), timing_repeats=50),
    "full": MnistScale(train_size=None, seeds=(0, 1, 2)),
    "paper": MnistScale(train_size=None, seeds=(0, 1, 2, 3, 4)),
}


def student_config(spec: StudentSpec, seed: int, kind: str) -> TrainConfig:
    """The training configuration of a student of ``kind`` ``"kd"``, ``"nokd"`` or ``"labelfree"``."""
    label_weight = {"kd": STUDENT_LABEL_WEIGHT, "nokd": 1.0, "labelfree": 0.0}[kind]
    return TrainConfig(epochs=spec.epochs, batch_size=spec.batch_size, lr=STUDENT_LR, lr_schedule="cosine",
                       temperature=spec.temperature if kind != "nokd" else 1.0, label_weight=label_weight,
                       seed=seed)


def prepare_inputs(dataset: ImageDataset, train_size: int | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normalised float inputs: a class-balanced random subset of ``train_size`` training images
    (seed 0; ``None``: all of them, in order) and the full test set."""
    keep = (torch.arange(len(dataset.train_labels)) if train_size is None
            else balanced_subset(dataset.train_labels, train_size, seed=0))
    return (normalize(dataset.train_images[keep], dataset.mean, dataset.std), dataset.train_labels[keep],
            normalize(dataset.test_images, dataset.mean, dataset.std), dataset.test_labels)


def train_teacher(x_train: Tensor, y_train: Tensor, seed: int, recipe: TeacherRecipe = REPORT_TEACHER,
                  fused_sgd: bool = False) -> tuple[torch.nn.Module, float]:
    """Train a teacher by ``recipe`` (default: the report's); returns the model and the wall time.
    ``fused_sgd``: SGD's update by PyTorch's fused kernel (:func:`kdlib.train.make_optimizer`)."""
    if recipe.train_size is not None:
        keep = balanced_subset(y_train, recipe.train_size, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    teacher = seeded(lambda: mlp(recipe.hidden, dropout=recipe.dropout), seed)
    shift = (lambda x, g: random_shift(x, g, recipe.shift)) if recipe.shift else None
    config = replace(recipe.config, seed=seed)
    log = train(teacher, x_train, y_train, config, batch_transform=shift,
                optimizer=partial(make_optimizer, config=config, fused=fused_sgd))
    return teacher.eval(), log.wall_s


def cached_teacher(x_train: Tensor, y_train: Tensor, seed: int, recipe: TeacherRecipe, source: str,
                   fused_sgd: bool = False, **key: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher of ``recipe`` and ``seed``: loaded from its verified checkpoint when one was
    made for exactly this recipe and data (and ``key``, and ``fused_sgd``), else trained and
    saved; returns it and its training wall time."""
    full_key = {**key, **recipe.training_key(), "seed": seed, "data": source, "train_rows": len(x_train),
                "kdlib": kdlib.__version__, **({"fused_sgd": True} if fused_sgd else {})}

    def fit(model: torch.nn.Module) -> dict[str, Any]:
        trained, wall = train_teacher(x_train, y_train, seed, recipe, fused_sgd=fused_sgd)
        model.load_state_dict(trained.state_dict())
        return {"train_wall_s": wall}

    return cached_model("mnist_teacher", full_key, lambda: mlp(recipe.hidden, dropout=recipe.dropout), fit)


def load_or_train_teacher(x_train: Tensor, y_train: Tensor, seed: int, profile: str, source: str,
                          results: ResultFile, x_test: Tensor, y_test: Tensor) -> torch.nn.Module:
    """The frozen report teacher of ``seed`` (:func:`table1_teacher`), recorded as a row."""
    teacher, info = table1_teacher(x_train, y_train, seed, profile, source, teacher_threads())
    record_teacher_row(results, seed, teacher, info, x_test, y_test)
    return teacher


def teacher_threads() -> int:
    """The threads Table 1's teachers train on, in every mode: two where the machine has two
    cores (``KDLIB_THREADS``: that many), in the one process or in rank 0 while the others wait.
    The count changes a teacher's last bits (its matrix products split over threads), and its
    students' rows with them; so it must not depend on how the run is shared out."""
    return threads_for("large mlp", whole_machine=True)


def table1_teacher(x_train: Tensor, y_train: Tensor, seed: int, profile: str, source: str,
                   threads: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Table 1's teacher of ``seed`` (:func:`cached_teacher`): the report's recipe, trained on
    ``threads`` threads (:func:`teacher_threads`) whatever the thread count around it, with
    SGD's fused update (the same recipe, other last bits: chapter 7 trains it without)."""
    with exactly(threads):
        return cached_teacher(x_train, y_train, seed, REPORT_TEACHER, source, fused_sgd=True,
                              experiment="mnist-table1-teacher", profile=profile, threads=threads)


def record_teacher_row(results: ResultFile, seed: int, teacher: torch.nn.Module, info: dict[str, Any],
                       x_test: Tensor, y_test: Tensor) -> None:
    """Record the report teacher of ``seed`` as its row, or check it is the one the file's
    students were trained with (its weights' digest; for an older row, its test accuracy)."""
    recipe = REPORT_TEACHER
    record_teacher(results, f"teacher/seed{seed}", teacher, lambda: {
        "kind": "teacher", "seed": seed, "hidden": list(recipe.hidden), "dropout": recipe.dropout,
        "config": replace(recipe.config, seed=seed).to_dict(), **info,
        "accuracy": accuracy(teacher, x_test, y_test)}, ("accuracy", 5e-4))


def student_row(run: MnistRun, student: torch.nn.Module, log: TrainLog, x_train: Tensor, teacher_logits: Tensor,
                x_test: Tensor, y_test: Tensor, teacher_test_logits: Tensor) -> dict[str, Any]:
    """The result row of a trained student: its test accuracy, training time and fidelity to the
    seed's teacher on the training and the test images (measured for the students without KD
    too, as a baseline). A student trained in a stack (:mod:`kdlib.stacked`) also records the
    stack's size and wall time; its ``train_wall_s`` is its share of that time."""
    test_logits = predict_logits(student, x_test)
    return {"kind": run.kind, "seed": run.seed, "spec": asdict(run.spec),
            "config": student_config(run.spec, run.seed, run.kind).to_dict(),
            "accuracy": (test_logits.argmax(1) == y_test).float().mean().item(),
            "train_wall_s": log.wall_s, "samples_per_s": log.samples_per_s,
            **({"stack": dict(log.stack)} if log.stack else {}),
            **fidelity_fields((predict_logits(student, x_train), teacher_logits),
                              (test_logits, teacher_test_logits))}


@dataclass(frozen=True)
class MnistRun:
    """One student run of the experiment: a row of Table 1 (``spec``), how it is trained
    (``kind``: ``"kd"``, ``"nokd"`` or ``"labelfree"``) and its seed; its row id comes from
    these fields (:meth:`StudentSpec.row_id`)."""

    kind: str
    spec: StudentSpec
    seed: int

    def row_id(self) -> str:
        return self.spec.row_id(self.kind, self.seed)


def planned_runs(seeds: tuple[int, ...]) -> list[MnistRun]:
    """Every student run of the experiment, seed by seed, without duplicates."""
    runs: list[MnistRun] = []
    for seed in seeds:
        runs += [MnistRun(kind, spec, seed) for spec in TABLE1 for kind in ("kd", "nokd")]
        runs.append(MnistRun("labelfree", LABEL_FREE, seed))
    return list({run.row_id(): run for run in runs}.values())


@dataclass(frozen=True)
class MnistStack:
    """Student runs trained together as one stack (:func:`kdlib.stacked.train_stacked`): every
    run of one width, number of epochs and batch size, whatever its kind, temperature or seed."""

    runs: tuple[MnistRun, ...]

    def row_id(self) -> str:
        """A name for progress reports (the rows keep their own ids)."""
        spec = self.runs[0].spec
        return f"stack of {len(self.runs)}: h{spec.hidden}_e{spec.epochs}_b{spec.batch_size}"


def stacked_runs(runs: list[MnistRun]) -> list[MnistStack]:
    """``runs`` in stacks of one shape and schedule, the largest first (so that two workers
    finish at about the same time)."""
    groups: dict[tuple[int, int, int], list[MnistRun]] = {}
    for run in runs:
        groups.setdefault((run.spec.hidden, run.spec.epochs, run.spec.batch_size), []).append(run)
    stacks = [MnistStack(tuple(group)) for group in groups.values()]
    return sorted(stacks, key=lambda stack: -stack_cost(stack))


def stack_cost(stack: MnistStack) -> float:
    """Roughly how long a stack trains: members times epochs times hidden units."""
    spec = stack.runs[0].spec
    return len(stack.runs) * spec.epochs * spec.hidden


def measure_inference(x_test: Tensor, repeats: int, threads: int) -> dict[str, Any]:
    """Inference cost of the teacher and of each student width (weights do not matter for timing)."""
    torch.manual_seed(0)
    models = {"teacher": mlp(TEACHER_HIDDEN, dropout=TEACHER_DROPOUT)}
    models.update({f"h{h}": mlp([h]) for h in sorted({s.hidden for s in TABLE1})})
    return {name: inference_cost(model, x_test, large_batch=1000, repeats=repeats, threads=threads).to_dict()
            for name, model in models.items()}


def run_mnist(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
              dataset: ImageDataset | None = None, command: str | None = None,
              time_budget_s: float | None = None, inference: bool = True,
              train_rows: bool = True, stacked: bool = True) -> dict[str, Any]:
    """Run (or resume) the whole MNIST experiment at ``profile`` scale; returns the result data.

    With ``out`` the rows are saved to that file as they finish and rows already there are not
    recomputed; without it, nothing is written. ``time_budget_s``: start no new student (nor its
    seed's teacher) after that many seconds. The rows are the recipes of :func:`planned_runs`,
    trained by the experiments' one driver (:func:`kdlib.distributed.run_rows`).
    ``inference=False`` skips the inference timings; ``train_rows=False`` trains nothing and
    only adds them.

    ``stacked=True`` (the default) trains the students of each width, number of epochs and batch
    size together, as one stack (:func:`stacked_runs`, :mod:`kdlib.stacked`), with two threads
    where there are two cores; ``stacked=False`` trains them one at a time, each a stack of its
    own, on one thread. A student takes the same steps, to the last bit, alone or in a stack
    (:mod:`kdlib.stacked`), so the two give the same rows, whether one process or several
    trains them (``tests/test_distributed.py``; ``benchmarks/workers.py`` at the full profile).
    """
    from kdlib.experiments import TimeBudget, paper_cpu_estimate
    from kdlib.profile import check_paper_on_cpu

    scale = SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    if train_rows:
        check_paper_on_cpu(profile, "cpu", "mnist", paper_cpu_estimate("mnist"))
    where = rank()  # under torchrun or --workers: rank 0 alone reads and writes the file
    results = ResultFile(out if where.is_main else None, "mnist-table1",
                         new_provenance(command, profile=profile, scale=asdict(scale), dataset="MNIST"))
    dataset = dataset if dataset is not None else load_mnist()
    results.use_data_source(dataset.source)
    x_train, y_train, x_test, y_test = prepare_inputs(dataset, scale.train_size)
    results.run_provenance["environment"]["torch_threads"] = set_threads("stacked mlp" if stacked else "mlp")
    results.run_provenance["stacked"] = stacked
    results.run_provenance["environment"]["ranks"] = where.world
    todo = broadcast([run for run in planned_runs(scale.seeds) if not results.has(run.row_id())]
                     if train_rows else [], where)
    # the teachers the rows need, and those whose row is missing: each trained (or loaded) once
    # by rank 0, on the same threads in every mode (teacher_threads), while the others wait;
    # their logits are sent to all, so a row is the same whichever mode trained it
    needed = broadcast([seed for seed in scale.seeds if train_rows and not budget.spent() and (
        any(run.seed == seed for run in todo) or not results.has(f"teacher/seed{seed}"))], where)
    threads = teacher_threads()
    results.run_provenance["environment"]["teacher_threads"] = threads

    def make_teacher(seed: int) -> tuple[Tensor, Tensor]:
        teacher, info = table1_teacher(x_train, y_train, seed, profile, dataset.source, threads)
        with exactly(threads):
            record_teacher_row(results, seed, teacher, info, x_test, y_test)
            return predict_logits(teacher, x_train), predict_logits(teacher, x_test)

    # seed: the teacher's train and test logits
    teachers: dict[int, tuple[Tensor, Tensor]] = broadcast(
        {seed: make_teacher(seed) for seed in needed} if where.is_main else None, where)

    def train_stack(stack: MnistStack) -> dict[str, dict[str, Any]]:
        models = [seeded(lambda: mlp([run.spec.hidden]), run.seed) for run in stack.runs]
        logs = train_stacked(models, x_train, y_train,
                             [student_config(run.spec, run.seed, run.kind) for run in stack.runs],
                             [None if run.kind == "nokd" else teachers[run.seed][0] for run in stack.runs])
        return {run.row_id(): student_row(run, model, log, x_train, teachers[run.seed][0], x_test, y_test,
                                          teachers[run.seed][1])
                for run, model, log in zip(stack.runs, models, logs)}

    def save(_: str, rows: dict[str, dict[str, Any]]) -> None:
        for row_id, row in rows.items():
            results.put(row_id, row)

    def report(i: int, n: int, name: str, rows: dict[str, dict[str, Any]]) -> None:
        if progress:
            for row_id, row in rows.items():
                where = f"stack {i}/{n}" if stacked else f"student {i}/{n}"
                print(f"{where} {row_id}: accuracy {row['accuracy']:.4f}, {row['train_wall_s']:.1f} s", flush=True)

    units = stacked_runs(todo) if stacked else [MnistStack((run,)) for run in todo]
    run_rows(units, train_stack, save, budget.spent, where, report)
    if where.is_main and inference and not budget.spent() and "inference" not in results.data:
        results.set("inference", measure_inference(x_test, scale.timing_repeats, threads=1))
    results.save()
    return results.data


# ------------------------------------------------------------------------------------------------
# Tables for the chapter


def paper_table1() -> pd.DataFrame:
    """The report's Table 1, as published."""
    return pd.read_csv(published_file("paper/table1_mnist.csv"))


def check_planned(data: dict[str, Any]) -> None:
    """Raise :class:`kdlib.experiments.MissingRows` unless every run planned for the recorded
    seeds is in the file (the tables select rows by their recipes' fields)."""
    command = run_command("mnist", data)
    planned_rows(data, [run.row_id() for run in planned_runs(tuple(data["provenance"]["scale"]["seeds"]))],
                 command)


def student_rows(data: dict[str, Any], kind: str) -> pd.DataFrame:
    """One line per (spec, seed) run of ``kind`` with its accuracy and training time, from a file
    that holds every planned run (:func:`check_planned`)."""
    check_planned(data)
    rows = [dict(**r["spec"], seed=r["seed"], accuracy=r["accuracy"], train_wall_s=r["train_wall_s"])
            for r in data["rows"].values() if r.get("kind") == kind]
    return pd.DataFrame(rows)


def row_students(kd: pd.DataFrame, nokd: pd.DataFrame, spec: StudentSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The KD students of Table 1's row ``spec`` and the labels-only students of the same width,
    epochs and batch size (labels-only students have no temperature)."""
    same = (kd.hidden == spec.hidden) & (kd.epochs == spec.epochs) & (kd.batch_size == spec.batch_size)
    plain = (nokd.hidden == spec.hidden) & (nokd.epochs == spec.epochs) & (nokd.batch_size == spec.batch_size)
    return kd[same & (kd.temperature == spec.temperature)], nokd[plain]


def summary_table(data: dict[str, Any]) -> pd.DataFrame:
    """Table 1 as we measured it: per row, mean and std over seeds, KD and no-KD, and cost ratios.
    Every planned run of the recorded seeds must be in the file: a missing one raises
    :class:`kdlib.experiments.MissingRows`."""
    kd = student_rows(data, "kd")
    nokd = student_rows(data, "nokd")
    lines = []
    for spec in TABLE1:
        mine, plain = row_students(kd, nokd, spec)
        ratios = cost_ratios(data["inference"]["teacher"], data["inference"][f"h{spec.hidden}"])
        lines.append({
            "student_hidden": spec.hidden, "temperature": spec.temperature, "epochs": spec.epochs,
            "batch_size": spec.batch_size, "seeds": len(mine),
            "kd_accuracy_pct": 100 * mine.accuracy.mean(),
            "kd_accuracy_std": 100 * mine.accuracy.std(ddof=1) if len(mine) > 1 else float("nan"),
            "nokd_accuracy_pct": 100 * plain.accuracy.mean(),
            "training_time_s": mine.train_wall_s.mean(),
            **ratios,
        })
    return pd.DataFrame(lines)


def side_by_side(data: dict[str, Any]) -> pd.DataFrame:
    """The report's Table 1 next to ours, row by row, with the same columns first."""
    paper = paper_table1()
    ours = summary_table(data)
    table = pd.DataFrame({
        "hidden": ours.student_hidden, "T": ours.temperature, "epochs": ours.epochs,
        "batch": ours.batch_size,
        "paper acc %": paper.accuracy_pct,
        "our KD acc % (± std)": [f"{m:.2f}" if pd.isna(sd) else f"{m:.2f} ± {sd:.2f}"  # one seed: no sd
                                 for m, sd in zip(ours.kd_accuracy_pct, ours.kd_accuracy_std)],
        "our no-KD acc %": ours.nokd_accuracy_pct.round(2),
        "paper train s": paper.training_time_s,
        "our train s": ours.training_time_s.round(1),
        "paper time ratio": paper.inference_time_ratio_teacher_over_student,
        "our latency ratio": ours.latency_ratio.round(1),
        "our throughput ratio": ours.throughput_ratio.round(1),
        "FLOP ratio": ours.flop_ratio.round(1),
    })
    return table


def student_labels(table: pd.DataFrame) -> list[str]:
    """A short name for each row of :func:`side_by_side`: units, T, epochs and batch size."""
    return [f"{h}, T = {t:g}, {e} ep., batch {b}"
            for h, t, e, b in zip(table.hidden, table["T"], table.epochs, table.batch)]


def table1_views(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`side_by_side` in three narrow tables for reading (four columns each, so that they
    fit a phone): accuracy and training cost, each row named by its student, and the measured
    teacher/student inference ratios, which depend only on the student's width."""
    student = student_labels(table)
    accuracy_view = pd.DataFrame({"student (units, T, epochs, batch)": student,
                                  "paper %": table["paper acc %"],
                                  "KD % (± sd)": table["our KD acc % (± std)"],
                                  "no KD %": table["our no-KD acc %"]})
    cost_view = pd.DataFrame({"student": student, "paper train s": table["paper train s"],
                              "our train s": table["our train s"],
                              "paper time ratio": table["paper time ratio"]})
    widths = table.drop_duplicates("hidden")
    ratio_view = pd.DataFrame({"units": widths.hidden,
                               "latency ratio (batch 1)": widths["our latency ratio"],
                               "throughput ratio (batch 1,000)": widths["our throughput ratio"],
                               "FLOP ratio": widths["FLOP ratio"]})
    return accuracy_view, cost_view, ratio_view


def kd_gaps(data: dict[str, Any]) -> pd.DataFrame:
    """Per row of Table 1: the KD student's accuracy minus the labels-only student's of the same
    width, epochs, batch size and seed (percentage points), with a 95% confidence interval over
    the seeds (paired: the two students of a seed share the teacher, initial weights and data
    order). Needs at least two seeds."""
    kd, nokd = student_rows(data, "kd"), student_rows(data, "nokd")
    lines = []
    for spec in TABLE1:
        mine, plain = row_students(kd, nokd, spec)
        a, b = (100 * frame.set_index("seed").accuracy for frame in (mine, plain))
        seeds = sorted(set(a.index) & set(b.index))
        gap = paired_gap([a[s] for s in seeds], [b[s] for s in seeds])
        lines.append({"student": spec_label(spec), "KD − no KD": gap.mean, "95% CI": f"[{gap.low:+.2f}, {gap.high:+.2f}]",
                      "seeds": gap.n, "below zero": gap.high < 0})
    return pd.DataFrame(lines)


def spec_label(spec: StudentSpec) -> str:
    """A row of Table 1 in a few words: units, T, epochs and batch size."""
    return f"{spec.hidden}, T = {spec.temperature:g}, {spec.epochs} ep., batch {spec.batch_size}"


def fidelity_gaps(data: dict[str, Any], where: str = "test") -> pd.DataFrame:
    """Per row of Table 1: the students' fidelity to their seed's teacher on the ``where``
    (``"test"`` or ``"train"``) images: top-1 agreement of the KD and the labels-only student
    (%, means over seeds), KD minus labels-only with a paired 95% interval, and the mean
    KL(teacher || student) at T = 1 of each (nats). The planned rows of the recorded seeds; a
    missing one raises :class:`kdlib.experiments.MissingRows`."""
    if where not in ("test", "train"):
        raise ValueError(f"where must be 'test' or 'train', got {where!r}")
    seeds = tuple(data["provenance"]["scale"]["seeds"])
    command = run_command("mnist", data)
    lines = []
    for spec in TABLE1:
        kd = planned_rows(data, [MnistRun("kd", spec, s).row_id() for s in seeds], command)
        plain = planned_rows(data, [MnistRun("nokd", spec, s).row_id() for s in seeds], command)
        require_fidelity(kd + plain, command)
        agree = [[100 * row[f"fidelity_{where}"]["agreement"] for row in rows] for rows in (kd, plain)]
        gap = paired_gap(*agree)
        lines.append({"student": spec_label(spec), "KD agrees %": sum(agree[0]) / len(seeds),
                      "no KD agrees %": sum(agree[1]) / len(seeds), "KD − no KD": gap,
                      "KL, KD": sum(row[f"fidelity_{where}"]["kl"] for row in kd) / len(seeds),
                      "KL, no KD": sum(row[f"fidelity_{where}"]["kl"] for row in plain) / len(seeds)})
    return pd.DataFrame(lines)


def report_time_over_flops(data: dict[str, Any]) -> pd.DataFrame:
    """Per row of Table 1: the report's teacher/student "inference time ratio", the FLOP ratio of
    the same two networks (2 FLOPs per multiply-add, counted by :func:`kdlib.bench.inference_cost`
    and stored in ``data["inference"]``), and the first divided by the second.

    FLOPs depend only on the layer sizes, which the report gives, so the FLOP ratio is the
    report's networks' as much as ours. A quotient of 1 would mean that the report's timings
    scale like the arithmetic; the report gives no hardware, batch size or timing method, so the
    quotient says how far its timings are from the FLOP count, not why.
    """
    paper = paper_table1()
    ours = summary_table(data)
    same = ["student_hidden", "temperature", "epochs", "batch_size"]
    if not (paper[same].astype(float).values == ours[same].astype(float).values).all():
        raise ValueError("the report's Table 1 and ours list their rows in different orders")
    report = paper.inference_time_ratio_teacher_over_student
    table = side_by_side(data)
    return pd.DataFrame({"student": student_labels(table),
                         "report time ratio": report,
                         "FLOP ratio": ours.flop_ratio,
                         "report / FLOP": report / ours.flop_ratio})


def temperature_gaps(data: dict[str, Any], temperatures: tuple[float, ...] = (1.0, 3.5, 10.0),
                     hidden: int = 300, epochs: int = 3, batch_size: int = 32) -> pd.DataFrame:
    """Table 1's KD students that differ only in temperature, compared in pairs, seed by seed.

    One line per pair (a, b) of ``temperatures`` (a before b): the mean of the accuracy at
    T = a minus that at T = b (percentage points), the standard deviation of those paired
    differences, the 95% confidence interval (:func:`kdlib.stats.paired_gap`), whether it
    contains zero, the interval with Bonferroni's correction for the number of pairs compared
    (each at level 1 - 0.05 / pairs) and whether it contains zero, and the seed-to-seed
    standard deviation of each of the two rows (the "± sd" of the chapter's table), so that a
    difference can be set against both.
    """
    kd = student_rows(data, "kd")
    same = (kd.hidden == hidden) & (kd.epochs == epochs) & (kd.batch_size == batch_size)
    by_t = {t: 100 * kd[same & (kd.temperature == t)].set_index("seed").accuracy for t in temperatures}
    lines = []
    pairs = [(a, b) for i, a in enumerate(temperatures) for b in temperatures[i + 1:]]
    for a, b in pairs:
        seeds = sorted(set(by_t[a].index) & set(by_t[b].index))
        values = [by_t[a][s] for s in seeds], [by_t[b][s] for s in seeds]
        gap, corrected = paired_gap(*values), paired_gap(*values, level=1 - 0.05 / len(pairs))
        lines.append({"T": f"{a:g} minus {b:g}", "difference": gap.mean,
                      "95% CI": f"[{gap.low:+.2f}, {gap.high:+.2f}]",
                      "sd of differences": gap.std, "contains 0": not gap.excludes_zero,
                      "corrected CI": f"[{corrected.low:+.2f}, {corrected.high:+.2f}]",
                      "corrected contains 0": not corrected.excludes_zero,
                      "seed sd, first": by_t[a][seeds].std(ddof=1),
                      "seed sd, second": by_t[b][seeds].std(ddof=1), "seeds": gap.n})
    return pd.DataFrame(lines)


def teacher_accuracy(data: dict[str, Any]) -> pd.Series:
    """The teacher's test accuracy (%) for each seed."""
    return pd.Series({r["seed"]: 100 * r["accuracy"] for r in data["rows"].values()
                      if r.get("kind") == "teacher"}, name="teacher accuracy %")


def label_weight_temperature_sweep(label_weights: list[float], temperatures: list[float],
                                   profile: str = "quick", hidden: int = 300, epochs: int = 3,
                                   seeds: tuple[int, ...] = (0,), dataset: ImageDataset | None = None,
                                   teacher: torch.nn.Module | None = None,
                                   recipe: TeacherRecipe = REPORT_TEACHER) -> pd.DataFrame:
    """Test accuracy of a ``784-hidden-10`` student for each (label_weight, T) and seed, from one
    frozen teacher: ``teacher`` if given (reuse it across calls), else one trained by ``recipe``.

    ``label_weight = 1`` ignores the teacher (so T plays no part); ``label_weight = 0`` ignores
    the labels.
    """
    scale = SCALES[check_profile(profile)]
    dataset = dataset if dataset is not None else load_mnist()
    x_train, y_train, x_test, y_test = prepare_inputs(dataset, scale.train_size)
    set_threads("mlp")
    if teacher is None:
        teacher, _ = train_teacher(x_train, y_train, seeds[0], recipe)
    teacher_logits = predict_logits(teacher, x_train)
    rows = []
    for seed in seeds:
        for label_weight in label_weights:
            for temperature in temperatures:
                config = TrainConfig(epochs=epochs, batch_size=32, lr=STUDENT_LR, lr_schedule="cosine",
                                     temperature=temperature, label_weight=label_weight, seed=seed)
                student = seeded(lambda: mlp([hidden]), seed)
                train(student, x_train, y_train, config,
                      teacher_logits=None if label_weight == 1.0 else teacher_logits)
                rows.append({"seed": seed, "label_weight": label_weight, "temperature": temperature,
                             "accuracy_pct": 100 * accuracy(student, x_test, y_test)})
    return pd.DataFrame(rows)


load_published = partial(experiments.load_published, "mnist")
"""The committed full-profile result file of this experiment, parsed."""


@book_style
def plot_accuracy(data: dict[str, Any]):
    """Accuracy against student width and against temperature, KD and no-KD, seed error bars."""
    import matplotlib.pyplot as plt

    kd, nokd = student_rows(data, "kd"), student_rows(data, "nokd")
    fig, (left, right) = plt.subplots(1, 2, figsize=(COLUMN_INCHES, 3.6), sharey=True)
    kd_color, nokd_color = "C0", "C1"
    for frame, label, marker, color in ((kd, "KD (label_weight 0.5)", "o", kd_color),
                                        (nokd, "no KD", "s", nokd_color)):
        sel = frame[(frame.epochs == 3) & (frame.batch_size == 32)]
        if frame is kd:
            sel = sel[sel.temperature == 3.5]
        stats = sel.groupby("hidden").accuracy.agg(["mean", "std"]).fillna(0) * 100
        left.errorbar(stats.index, stats["mean"], yerr=stats["std"], fmt=marker + "-", capsize=3,
                      label=label, color=color)
    left.set_xscale("log")
    left.set_xticks([50, 300, 600], ["50", "300", "600"])
    left.set_xticks([], minor=True)
    left.set_xlabel("hidden units")
    left.set_ylabel("test accuracy (%)")
    left.set_title("width (T = 3.5)")
    sel = kd[(kd.hidden == 300) & (kd.epochs == 3) & (kd.batch_size == 32)]
    stats = sel.groupby("temperature").accuracy.agg(["mean", "std"]).fillna(0) * 100
    right.errorbar(stats.index, stats["mean"], yerr=stats["std"], fmt="o-", capsize=3, color=kd_color)
    plain = nokd[(nokd.hidden == 300) & (nokd.epochs == 3) & (nokd.batch_size == 32)].accuracy * 100
    right.axhline(plain.mean(), color=nokd_color, ls="--")
    right.set_xscale("log")
    right.set_xticks([1, 3.5, 10], ["1", "3.5", "10"])
    right.set_xticks([], minor=True)
    right.set_xlabel("temperature T")
    right.set_title("temperature (300 units)")
    teacher = teacher_accuracy(data).mean()
    for ax in (left, right):
        ax.axhline(teacher, color="black", ls=":", label=f"teacher ({teacher:.2f}%)")
    legend_below(fig, left, ncols=3)
    return fig
