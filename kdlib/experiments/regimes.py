"""When does distillation help? Measured regimes on MNIST (chapter 7).

Every sweep trains a one-hidden-layer student three ways, paired by seed (the same class-balanced
training subset, initial weights and data order):

* ``kd``: the distillation loss from a frozen teacher (``label_weight`` weighs the hard labels);
* ``nokd``: the hard labels alone;
* ``smooth``: label smoothing, the target ``(1 - eps) e_y + eps / C``: it depends on the label
  only, not on the image.

The sweeps: (1) the number of labelled examples; (2) the teacher's quality (accuracy, log-loss,
calibration); (3) label smoothing against distillation; (4) a grid of temperature and label_weight;
(5) Hinton et al. (2015)'s MNIST regime as an anchor. Teachers are trained once per recipe on
all 60,000 training images (seed 0) and cached on disk (:mod:`kdlib.checkpoints`); one teacher
serves every student seed. Rows are shared between sweeps when they are the same run.

``python -m kdlib.experiments regimes --profile full`` writes ``results/mnist_regimes_full.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor, nn

from kdlib.calibration import expected_calibration_error, log_loss, reliability_bins
from kdlib.data import ImageDataset, load_mnist
from kdlib.checkpoints import record_teacher
from kdlib.distributed import broadcast, one_for_all, rank, run_rows
from kdlib.figures import COLUMN_INCHES, book_style, legend_below
from kdlib import experiments
from kdlib.experiments import KD_LABEL_WEIGHT, KD_TEMPERATURE, planned_rows, require_fidelity, run_command
from kdlib.experiments.mnist import (REPORT_TEACHER, TeacherRecipe, balanced_subset, cached_teacher,
                                    prepare_inputs)
from kdlib.fidelity import fidelity_fields
from kdlib.models import mlp, seeded
from kdlib.profile import check_profile
from kdlib.results import ResultFile, new_provenance
from kdlib.stats import gap_by_seed, matching_rows, seed_differences
from kdlib.threads import set_threads
from kdlib.train import TrainConfig, predict_logits, train

TEACHER_SEED = 0
TEACHERS: dict[str, TeacherRecipe] = {recipe.name: recipe for recipe in (
    REPORT_TEACHER,
    TeacherRecipe("5 epochs", config=replace(REPORT_TEACHER.config, epochs=5, batch_size=64, lr=0.05)),
    TeacherRecipe("jitter, 15 epochs", shift=2,
                  config=replace(REPORT_TEACHER.config, epochs=15, batch_size=128, lr=0.1)),
    TeacherRecipe("over-confident (5 epochs, logits x 4)", sharpen=4.0,
                  config=replace(REPORT_TEACHER.config, epochs=5, batch_size=64, lr=0.05)),
    TeacherRecipe("under-trained (2,000 images)", train_size=2_000,
                  config=replace(REPORT_TEACHER.config, epochs=2)),
)}
STEPS_TARGET = 1_500  # small training sets get more epochs: about this many steps, 3 to 200 epochs


def epochs_for(train_size: int, batch_size: int) -> int:
    """Epochs for a student trained on ``train_size`` examples: about STEPS_TARGET steps in all,
    but 3 epochs at least (so the largest sets get more steps) and 200 at most."""
    return int(min(200, max(3, round(STEPS_TARGET * batch_size / train_size))))


@dataclass(frozen=True)
class StudentRun:
    """One student training run of a sweep; its fields are its identity in the result file."""

    kind: str  # "kd", "nokd" or "smooth"
    train_size: int
    seed: int
    teacher: str | None = None
    temperature: float = 1.0
    label_weight: float = 1.0  # weight of the hard labels (1: labels only)
    label_smoothing: float = 0.0
    hidden: tuple[int, ...] = (300,)
    epochs: int = 0  # 0: epochs_for(train_size, batch_size)
    batch_size: int = 32
    lr: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in ("kd", "nokd", "smooth"):
            raise ValueError(f"kind must be 'kd', 'nokd' or 'smooth', got {self.kind!r}")
        if (self.kind == "kd") != (self.teacher is not None):
            raise ValueError("a 'kd' run needs a teacher and the other kinds must not have one")
        if self.kind == "kd" and self.teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}: known teachers are {sorted(TEACHERS)}")

    def config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs or epochs_for(self.train_size, self.batch_size),
                           batch_size=self.batch_size, lr=self.lr, lr_schedule="cosine",
                           temperature=self.temperature, label_weight=self.label_weight,
                           label_smoothing=self.label_smoothing, seed=self.seed)

    def row_id(self) -> str:
        width = "-".join(map(str, self.hidden))
        return (f"{self.kind}/{self.teacher or 'none'}/n{self.train_size}/h{width}/T{self.temperature:g}"
                f"/w{self.label_weight:g}/eps{self.label_smoothing:g}/e{self.config().epochs}_b{self.batch_size}"
                f"_lr{self.lr:g}/seed{self.seed}")


def kd_run(train_size: int, seed: int, teacher: str, temperature: float = KD_TEMPERATURE,
           label_weight: float = KD_LABEL_WEIGHT, **fields: Any) -> StudentRun:
    return StudentRun("kd", train_size, seed, teacher, temperature, label_weight, **fields)


def nokd_run(train_size: int, seed: int, **fields: Any) -> StudentRun:
    return StudentRun("nokd", train_size, seed, **fields)


@dataclass(frozen=True)
class RegimeScale:
    """What the sweeps cover in a profile."""

    sizes: tuple[int, ...]  # sweep 1: labelled training-set sizes
    seeds: tuple[int, ...]
    main_teacher: str
    teachers: tuple[str, ...]  # sweep 2
    teacher_sizes: tuple[int, ...]
    smoothing: tuple[float, ...]  # sweep 3
    temperatures: tuple[float, ...]  # sweep 4
    label_weights: tuple[float, ...]
    grid_sizes: tuple[int, ...]
    grid_seeds: tuple[int, ...]
    anchor_seeds: tuple[int, ...]  # sweep 5 (empty: skipped)
    anchor_epochs: int = 10


SCALES: dict[str, RegimeScale] = {
    "quick": RegimeScale(sizes=(300, 3_000), seeds=(0, 1, 2), main_teacher=REPORT_TEACHER.name,
                         teachers=(), teacher_sizes=(), smoothing=(0.1,), temperatures=(), label_weights=(),
                         grid_sizes=(), grid_seeds=(), anchor_seeds=()),
    "full": RegimeScale(sizes=(250, 500, 1_000, 2_000, 5_000, 20_000, 60_000), seeds=(0, 1, 2, 3, 4),
                        main_teacher="5 epochs", teachers=tuple(TEACHERS), teacher_sizes=(1_000, 60_000),
                        smoothing=(0.05, 0.1, 0.2, 0.4), temperatures=(1.0, 2.0, 4.0, 8.0, 20.0),
                        label_weights=(0.1, 0.5, 0.9), grid_sizes=(1_000, 60_000), grid_seeds=(0, 1, 2),
                        anchor_seeds=(0, 1, 2)),
}
SCALES["paper"] = SCALES["full"]
ANCHOR = {"hidden": (800, 800), "batch_size": 128, "lr": 0.01}  # at T = 20 a larger rate diverged
ANCHOR_TEACHER = "jitter, 15 epochs"
ANCHOR_KD = {"temperature": 20.0, "label_weight": 0.1}
FULL_SIZE = 60_000


def planned_runs(scale: RegimeScale) -> list[StudentRun]:
    """Every student run of the sweeps, in priority order, without duplicates."""
    runs: list[StudentRun] = []
    for seed in scale.seeds:  # 1: labelled data
        for n in scale.sizes:
            runs += [kd_run(n, seed, scale.main_teacher), nokd_run(n, seed)]
    for seed in scale.seeds:  # 2: the teacher
        for n in scale.teacher_sizes:
            runs += [kd_run(n, seed, name) for name in scale.teachers] + [nokd_run(n, seed)]
    for seed in scale.seeds:  # 3: label smoothing, at the smallest and largest sweep-1 size
        for n in sorted({min(scale.sizes), max(scale.sizes)}):
            runs += [StudentRun("smooth", n, seed, label_smoothing=eps) for eps in scale.smoothing]
    for seed in scale.grid_seeds:  # 4: temperature and label_weight
        for n in scale.grid_sizes:
            runs += [kd_run(n, seed, scale.main_teacher, t, a) for t in scale.temperatures for a in scale.label_weights]
    for seed in scale.anchor_seeds:  # 5: Hinton et al.'s regime
        runs += [kd_run(FULL_SIZE, seed, ANCHOR_TEACHER, epochs=scale.anchor_epochs, **ANCHOR_KD, **ANCHOR),
                 nokd_run(FULL_SIZE, seed, epochs=scale.anchor_epochs, **ANCHOR)]
    return list(dict.fromkeys(runs))


def teacher_metrics(logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """Test-set accuracy, errors, log-loss, calibration error and reliability bins of a teacher."""
    probs = logits.softmax(dim=1)
    bins = reliability_bins(probs, labels)
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item(),
            "errors": int((logits.argmax(1) != labels).sum()), "log_loss": log_loss(logits, labels),
            "ece": expected_calibration_error(probs, labels), "reliability": asdict(bins)}


def training_targets(logits: Tensor, labels: Tensor, temperature: float = KD_TEMPERATURE) -> dict[str, float]:
    """What the students are taught: the teacher on the *training* images, where distillation
    happens. Accuracy and log-loss there, and the mean entropy (nats) of the targets softened at
    ``temperature`` (0: one-hot; log 10 = 2.30: uniform)."""
    soft = (logits / temperature).softmax(dim=1)
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item(), "log_loss": log_loss(logits, labels),
            "entropy_at_T": -(soft * soft.clamp_min(1e-30).log()).sum(dim=1).mean().item(),
            "temperature": temperature}


class Teachers:
    """The sweeps' teachers, each trained once (or loaded from its checkpoint) when first asked
    for; holds each teacher's logits on the training set."""

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                 source: str, results: ResultFile) -> None:
        self.source, self.results = source, results
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.logits: dict[str, Tensor] = {}
        self.test: dict[str, Tensor] = {}

    def model(self, name: str) -> nn.Module:
        """Teacher ``name``, trained once (or loaded from its verified checkpoint), recorded as a row."""
        recipe = TEACHERS[name]
        info: dict[str, Any] = {}

        def make() -> nn.Module:  # on rank 0 only, under torchrun (kdlib.distributed)
            model, found = cached_teacher(self.x_train, self.y_train, TEACHER_SEED, recipe, self.source,
                                          experiment="mnist-teacher")
            info.update(found)
            return model

        model = one_for_all(make, lambda: mlp(recipe.hidden, dropout=recipe.dropout), rank()).eval()
        row_id = f"teacher/{name}"

        def make_row() -> dict[str, Any]:
            test_logits = predict_logits(model, self.x_test) * recipe.sharpen
            train_logits = predict_logits(model, self.x_train) * recipe.sharpen
            return {"kind": "teacher", "teacher": name, "recipe": asdict(recipe), "seed": TEACHER_SEED, **info,
                    **teacher_metrics(test_logits, self.y_test),
                    "train_set": training_targets(train_logits, self.y_train)}

        record_teacher(self.results, row_id, model, make_row, ("accuracy", 5e-4))
        return model

    def train_logits(self, name: str) -> Tensor:
        """Logits of teacher ``name`` (sharpened by its recipe) for every training image."""
        if name not in self.logits:
            self.logits[name] = predict_logits(self.model(name), self.x_train) * TEACHERS[name].sharpen
        return self.logits[name]

    def test_logits(self, name: str) -> Tensor:
        """Logits of teacher ``name`` (sharpened by its recipe) for every test image."""
        if name not in self.test:
            self.test[name] = predict_logits(self.model(name), self.x_test) * TEACHERS[name].sharpen
        return self.test[name]


def fidelity_teacher(run: StudentRun, main_teacher: str) -> str:
    """The teacher a student's fidelity is measured against: its own, or, for a student trained
    without one, the teacher its KD counterpart learns from (a baseline for the KD students)."""
    if run.teacher is not None:
        return run.teacher
    return ANCHOR_TEACHER if run.hidden == ANCHOR["hidden"] else main_teacher


def run_student(run: StudentRun, data: tuple[Tensor, ...], teachers: Teachers,
                main_teacher: str) -> dict[str, Any]:
    """Train one student of ``run`` and return its result row, with its fidelity (agreement and
    KL at T = 1) to :func:`fidelity_teacher` on its own training images and on the test set."""
    x_train, y_train, x_test, y_test = data
    keep = balanced_subset(y_train, run.train_size, run.seed)
    soft = teachers.train_logits(run.teacher)[keep] if run.teacher is not None else None
    student = seeded(lambda: mlp(list(run.hidden)), run.seed)
    config = run.config()
    log = train(student, x_train[keep], y_train[keep], config, teacher_logits=soft)
    logits = predict_logits(student, x_test)
    reference = fidelity_teacher(run, main_teacher)
    return {**asdict(run), "hidden": list(run.hidden), "config": config.to_dict(),
            "accuracy": (logits.argmax(1) == y_test).float().mean().item(),
            "errors": int((logits.argmax(1) != y_test).sum()), "log_loss": log_loss(logits, y_test),
            "train_wall_s": log.wall_s, "fidelity_teacher": reference,
            **fidelity_fields((predict_logits(student, x_train[keep]),
                               teachers.train_logits(reference)[keep]),
                              (logits, teachers.test_logits(reference)))}


def run_regimes(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
                dataset: ImageDataset | None = None, command: str | None = None,
                time_budget_s: float | None = None, scale: RegimeScale | None = None) -> dict[str, Any]:
    """Run (or resume) the sweeps of chapter 7 at ``profile`` scale; returns the result data.

    ``scale`` replaces the profile's sweeps with your own, e.g.
    ``dataclasses.replace(SCALES["quick"], teachers=("5 epochs",), teacher_sizes=(300,))``;
    a recipe added to :data:`TEACHERS` can be named there.
    """
    from kdlib.experiments import TimeBudget, paper_cpu_estimate
    from kdlib.profile import check_paper_on_cpu

    scale = scale if scale is not None else SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    check_paper_on_cpu(profile, "cpu", "regimes", paper_cpu_estimate("regimes"))
    where = rank()  # under torchrun: rank 0 writes the file, the rows are shared out
    results = ResultFile(out if where.is_main else None, "mnist-regimes", new_provenance(command, profile=profile, scale=asdict(scale),
                                                              dataset="MNIST", teachers=sorted(TEACHERS)))
    results.run_provenance["environment"]["torch_threads"] = set_threads("mlp")
    results.run_provenance["environment"]["ranks"] = where.world
    dataset = dataset if dataset is not None else load_mnist()
    results.use_data_source(dataset.source)
    data = prepare_inputs(dataset, None)
    teachers = Teachers(*data, dataset.source, results)
    for name in sorted({scale.main_teacher, *scale.teachers, *([ANCHOR_TEACHER] if scale.anchor_seeds else [])}):
        if broadcast(budget.spent(), where):
            break
        teachers.train_logits(name)  # teacher rows first, so that a partial file has them
    todo = [run for run in planned_runs(scale) if not results.has(run.row_id())]

    def report(i: int, n: int, row_id: str, row: dict[str, Any]) -> None:
        if progress:
            print(f"{i}/{n} {row_id}: accuracy {row['accuracy']:.4f}, {row['train_wall_s']:.1f} s", flush=True)

    run_rows(todo, lambda run: run_student(run, data, teachers, scale.main_teacher), results.put, budget.spent, where, report)
    results.save()
    return results.data


# ------------------------------------------------------------------------------------------------
# Tables for the chapter


load_published = partial(experiments.load_published, "regimes")
"""The committed full-profile result file of this experiment, parsed."""


def student_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One line per student run, accuracy in percent."""
    rows = [r for r in data["rows"].values() if r.get("kind") != "teacher"]
    frame = pd.DataFrame(rows)
    frame["hidden"] = frame["hidden"].map(tuple)
    frame["accuracy_pct"] = 100 * frame["accuracy"]
    return frame


def teacher_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One line per teacher: test accuracy, errors, log-loss and calibration error, and (where
    measured) its log-loss and target entropy on the training images."""
    rows = [r for r in data["rows"].values() if r.get("kind") == "teacher"]
    nan = float("nan")
    return pd.DataFrame([{"teacher": r["teacher"], "accuracy_pct": 100 * r["accuracy"], "errors": r["errors"],
                          "log_loss": r["log_loss"], "ece": r["ece"],
                          "train_log_loss": r.get("train_set", {}).get("log_loss", nan),
                          "train_entropy_at_T": r.get("train_set", {}).get("entropy_at_T", nan)} for r in rows])


def recorded_scale(data: dict[str, Any]) -> RegimeScale:
    """The scale a result file was made with (recorded in its provenance)."""
    fields = data["provenance"]["scale"]
    return RegimeScale(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def runs_frame(data: dict[str, Any], **arms: list[StudentRun]) -> pd.DataFrame:
    """The rows of planned runs, found by their row ids, one line per run with an ``arm`` column
    naming its group (``runs_frame(data, kd=[...], nokd=[...])``), accuracy in percent. A
    planned run missing from the file raises :class:`kdlib.experiments.MissingRows`."""
    command = run_command("regimes", data)
    frames = [pd.DataFrame(planned_rows(data, [run.row_id() for run in runs], command)).assign(arm=arm)
              for arm, runs in arms.items()]
    frame = pd.concat(frames, ignore_index=True)
    frame["hidden"] = frame["hidden"].map(tuple)
    frame["accuracy_pct"] = 100 * frame["accuracy"]
    return frame


# the students of sweeps 1-4, as their recipes make them (for selecting rows by columns)
PLAIN = {field: getattr(nokd_run(1, 0), field) for field in ("hidden", "batch_size", "lr")}
DEFAULT_KD = {field: getattr(kd_run(1, 0, REPORT_TEACHER.name), field)
              for field in ("temperature", "label_weight", "epochs")} | PLAIN
KD_ARM, NOKD_ARM, SMOOTH_ARM = {"arm": "kd"}, {"arm": "nokd"}, {"arm": "smooth"}


def gain_by_size(data: dict[str, Any], teacher: str | None = None) -> pd.DataFrame:
    """Sweep 1: accuracy of KD and labels-only students and the paired KD gain, per size."""
    scale = recorded_scale(data)
    teacher = teacher or scale.main_teacher
    lines = []
    for n in scale.sizes:
        frame = runs_frame(data, kd=[kd_run(n, seed, teacher) for seed in scale.seeds],
                           nokd=[nokd_run(n, seed) for seed in scale.seeds])
        g = gap_by_seed(frame, KD_ARM, NOKD_ARM)
        lines.append({"labelled examples": n, "KD acc %": matching_rows(frame, **KD_ARM).accuracy_pct.mean(),
                      "labels-only acc %": matching_rows(frame, **NOKD_ARM).accuracy_pct.mean(), "gain": g.mean,
                      "CI low": g.low, "CI high": g.high,
                      "worst seed": seed_differences(frame, KD_ARM, NOKD_ARM).min(), "seeds": g.n})
    return pd.DataFrame(lines)


def fidelity_by_size(data: dict[str, Any]) -> pd.DataFrame:
    """Sweep 1's students against the main teacher: top-1 agreement on the test images of the KD
    and the labels-only students (%, means over seeds), KD minus labels-only with its paired
    95% interval, the agreement of both on their own training images (and KD minus labels-only
    there, paired), and the mean
    KL(teacher || student) at T = 1 on the test images (nats), the accuracy gain, and the
    agreement gain minus the accuracy gain (paired by seed). Planned rows only; a missing
    row, or a file made before kdlib measured fidelity, raises
    :class:`kdlib.experiments.MissingRows`."""
    scale = recorded_scale(data)
    lines = []
    for n in scale.sizes:
        frame = runs_frame(data, kd=[kd_run(n, seed, scale.main_teacher) for seed in scale.seeds],
                           nokd=[nokd_run(n, seed) for seed in scale.seeds])
        require_fidelity(frame.to_dict("records"), run_command("regimes", data))
        for where in ("test", "train"):
            frame[f"agreement_{where}"] = [100 * f["agreement"] for f in frame[f"fidelity_{where}"]]
        frame["kl_test"] = [f["kl"] for f in frame["fidelity_test"]]
        frame["agreement_over_accuracy"] = frame["agreement_test"] - frame["accuracy_pct"]
        kd, plain = matching_rows(frame, **KD_ARM), matching_rows(frame, **NOKD_ARM)
        lines.append({"N": n, "KD agrees %": kd.agreement_test.mean(), "no KD agrees %": plain.agreement_test.mean(),
                      "KD − no KD": gap_by_seed(frame, KD_ARM, NOKD_ARM, column="agreement_test"),
                      "KD agrees, train %": kd.agreement_train.mean(),
                      "no KD agrees, train %": plain.agreement_train.mean(),
                      "KD − no KD, train": gap_by_seed(frame, KD_ARM, NOKD_ARM, column="agreement_train"),
                      "KL, KD": kd.kl_test.mean(), "KL, no KD": plain.kl_test.mean(),
                      "accuracy gain": gap_by_seed(frame, KD_ARM, NOKD_ARM),
                      "agreement gain − accuracy gain": gap_by_seed(frame, KD_ARM, NOKD_ARM,
                                                                    column="agreement_over_accuracy")})
    return pd.DataFrame(lines)


def gains_by_seed(data: dict[str, Any], train_size: int, teacher: str | None = None) -> pd.Series:
    """Sweep 1's gain (KD minus labels-only accuracy, points) at ``train_size``, seed by seed
    (the main teacher unless ``teacher`` is given)."""
    scale = recorded_scale(data)
    teacher = teacher or scale.main_teacher
    frame = runs_frame(data, kd=[kd_run(train_size, seed, teacher) for seed in scale.seeds],
                       nokd=[nokd_run(train_size, seed) for seed in scale.seeds])
    return seed_differences(frame, KD_ARM, NOKD_ARM)


def equivalent_labelled(table: pd.DataFrame) -> pd.Series:
    """For each size N, how many labelled examples the labels-only student would need to match
    the KD student's accuracy at N (log-linear interpolation of the labels-only curve; NaN
    beyond the largest size measured). Its ratio to N is the data KD was "worth"."""
    sizes = table["labelled examples"].astype(float).to_numpy()
    plain = table["labels-only acc %"].to_numpy()
    out = []
    for kd in table["KD acc %"]:
        above = [i for i in range(len(plain)) if plain[i] >= kd]
        if not above:
            out.append(float("nan"))
            continue
        i = above[0]
        if i == 0:
            out.append(sizes[0])
            continue
        frac = (kd - plain[i - 1]) / (plain[i] - plain[i - 1])
        out.append(float(np.exp(np.log(sizes[i - 1]) + frac * (np.log(sizes[i]) - np.log(sizes[i - 1])))))
    return pd.Series(out, index=table.index, name="equivalent labelled examples")


def risk_variances(student_logits: Tensor, teacher_probs: Tensor, labels: Tensor) -> dict[str, float]:
    """Chapter 3 on real data: the per-example variance of a fixed predictor's log-loss against
    one-hot labels, and against the teacher's probabilities (the distilled risk's summand)."""
    log_p = student_logits.double().log_softmax(dim=1)
    one_hot = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
    distilled = -(teacher_probs.double() * log_p).sum(dim=1)
    return {"empirical": one_hot.var().item(), "distilled": distilled.var().item(),
            "ratio": one_hot.var().item() / distilled.var().item()}


def variance_ratio(profile: str = "quick", train_size: int = 1_000, seed: int = 0,
                   dataset: ImageDataset | None = None) -> dict[str, float]:
    """Chapter 3's variance comparison on MNIST: a labels-only student trained on ``train_size``
    images is the fixed predictor; its per-example test log-loss is taken against the labels and
    against the profile's main teacher's probabilities (see :func:`risk_variances`)."""
    scale = SCALES[check_profile(profile)]
    set_threads("mlp")
    dataset = dataset if dataset is not None else load_mnist()
    x_train, y_train, x_test, y_test = prepare_inputs(dataset, None)
    teachers = Teachers(x_train, y_train, x_test, y_test, dataset.source,
                        ResultFile(None, "mnist-regimes", {}))
    teacher = teachers.model(scale.main_teacher)
    run = nokd_run(train_size, seed)
    keep = balanced_subset(y_train, train_size, seed)
    student = seeded(lambda: mlp(list(run.hidden)), seed)
    train(student, x_train[keep], y_train[keep], run.config())
    teacher_probs = (predict_logits(teacher, x_test) * TEACHERS[scale.main_teacher].sharpen).softmax(dim=1)
    return risk_variances(predict_logits(student, x_test), teacher_probs, y_test)


def teacher_gains(data: dict[str, Any], train_size: int) -> pd.DataFrame:
    """Sweep 2: each teacher's test metrics beside its students' paired KD gain at ``train_size``
    (every teacher at the sweep's sizes, the main teacher alone at sweep 1's other sizes)."""
    scale = recorded_scale(data)
    names = scale.teachers if train_size in scale.teacher_sizes else (scale.main_teacher,)
    if train_size not in scale.teacher_sizes and train_size not in scale.sizes:
        raise ValueError(f"no students were planned at {train_size} examples: sweep 2 has "
                         f"{scale.teacher_sizes}, sweep 1 {scale.sizes}")
    teachers = teacher_frame(data).set_index("teacher")
    lines = []
    for name in names:
        frame = runs_frame(data, kd=[kd_run(train_size, seed, name) for seed in scale.seeds],
                           nokd=[nokd_run(train_size, seed) for seed in scale.seeds])
        g = gap_by_seed(frame, KD_ARM, NOKD_ARM)
        lines.append({"teacher": name, **teachers.loc[name].to_dict(), "gain": g.mean, "CI low": g.low,
                      "CI high": g.high, "seeds": g.n})
    return pd.DataFrame(lines)


def smoothing_vs_kd(data: dict[str, Any]) -> pd.DataFrame:
    """Sweep 3: at each size, the best label smoothing (highest mean accuracy; chosen on the test
    set, so slightly flattered) against the labels-only and the KD student, paired by seed."""
    scale = recorded_scale(data)
    lines = []
    for n in sorted({min(scale.sizes), max(scale.sizes)}):
        smooth = runs_frame(data, smooth=[StudentRun("smooth", n, seed, label_smoothing=eps)
                                          for seed in scale.seeds for eps in scale.smoothing])
        best = smooth.groupby("label_smoothing").accuracy_pct.mean().idxmax()
        frame = runs_frame(data, smooth=[StudentRun("smooth", n, seed, label_smoothing=best) for seed in scale.seeds],
                           nokd=[nokd_run(n, seed) for seed in scale.seeds],
                           kd=[kd_run(n, seed, scale.main_teacher) for seed in scale.seeds])
        smooth_gain, kd_gain = gap_by_seed(frame, SMOOTH_ARM, NOKD_ARM), gap_by_seed(frame, KD_ARM, NOKD_ARM)
        kd_over_smooth = gap_by_seed(frame, KD_ARM, SMOOTH_ARM)
        lines.append({"labelled examples": n, "best eps": best, "smoothing gain": smooth_gain.mean,
                      "smoothing CI": f"[{smooth_gain.low:+.2f}, {smooth_gain.high:+.2f}]",
                      "KD gain": kd_gain.mean, "KD over smoothing": kd_over_smooth.mean,
                      "KD over smoothing CI": f"[{kd_over_smooth.low:+.2f}, {kd_over_smooth.high:+.2f}]",
                      # a share of a gain that the seeds cannot tell from zero would mean nothing
                      "share of KD gain": smooth_gain.mean / kd_gain.mean if kd_gain.excludes_zero
                      else float("nan")})
    return pd.DataFrame(lines)


def grid(data: dict[str, Any], train_size: int, statistic: str = "mean") -> pd.DataFrame:
    """Sweep 4: accuracy (%) of the KD student for each (T, label_weight), main teacher: the mean over
    seeds, or with ``statistic="std"`` their standard deviation."""
    scale = recorded_scale(data)
    frame = runs_frame(data, kd=[kd_run(train_size, seed, scale.main_teacher, t, w) for seed in scale.grid_seeds
                                 for t in scale.temperatures for w in scale.label_weights])
    return frame.pivot_table(index="temperature", columns="label_weight", values="accuracy_pct", aggfunc=statistic)


HINTON_ERRORS = {"teacher": 67, "student": 146, "distilled": 74}  # Hinton et al. (2015), MNIST test errors


def anchor_errors(data: dict[str, Any]) -> tuple[pd.Series, pd.Series]:
    """Sweep 5: test errors of the 800-800 students, labels only and distilled, one per seed."""
    scale = recorded_scale(data)
    frame = runs_frame(data, nokd=[nokd_run(FULL_SIZE, seed, epochs=scale.anchor_epochs, **ANCHOR)
                                   for seed in scale.anchor_seeds],
                       kd=[kd_run(FULL_SIZE, seed, ANCHOR_TEACHER, epochs=scale.anchor_epochs, **ANCHOR_KD, **ANCHOR)
                           for seed in scale.anchor_seeds])
    return (matching_rows(frame, **NOKD_ARM).set_index("seed").errors,
            matching_rows(frame, **KD_ARM).set_index("seed").errors)


def anchor_table(data: dict[str, Any]) -> pd.DataFrame:
    """Sweep 5: test errors (of 10,000) beside Hinton et al. (2015)'s MNIST numbers."""
    teacher = teacher_frame(data).set_index("teacher").loc[ANCHOR_TEACHER]
    no, kd = anchor_errors(data)
    return pd.DataFrame([
        {"model": f"teacher 1200-1200 ({ANCHOR_TEACHER})", "Hinton et al. errors": HINTON_ERRORS["teacher"],
         "our errors": f"{teacher.errors:.0f}"},
        {"model": "student 800-800, labels only", "Hinton et al. errors": HINTON_ERRORS["student"],
         "our errors": f"{no.mean():.0f} ± {no.std(ddof=1):.0f}"},
        {"model": f"student 800-800, KD (T = {ANCHOR_KD['temperature']:g})",
         "Hinton et al. errors": HINTON_ERRORS["distilled"], "our errors": f"{kd.mean():.0f} ± {kd.std(ddof=1):.0f}"},
    ])


@book_style
def plot_gain_by_size(table: pd.DataFrame):
    """The paired KD gain with its 95% confidence interval against the number of labelled examples."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.8))
    n = table["labelled examples"]
    ax.errorbar(n, table.gain, yerr=[table.gain - table["CI low"], table["CI high"] - table.gain],
                fmt="o-", capsize=4)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xscale("log")
    ax.set_xticks(n, [f"{v / 1000:g}k" if v >= 1000 else f"{v:g}" for v in n])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel("KD gain (points, 95% CI)")
    ax.set_title("KD minus labels only, paired seeds")
    return fig


@book_style
def plot_reliability(data: dict[str, Any]):
    """Reliability diagrams of the teachers: accuracy against confidence, per confidence bin."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 5.6))
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfectly calibrated")
    for row in (r for r in data["rows"].values() if r.get("kind") == "teacher"):
        bins = row["reliability"]
        points = [(c, a) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["counts"]) if n >= 20]
        ax.plot(*zip(*points), "o-", ms=4, label=f"{row['teacher']} (ECE {row['ece']:.3f})")
    ax.set_xlabel("confidence (largest predicted probability)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("Teachers' reliability (bins with 20+ test images)")
    ax.set_xlim(0.3, 1.01)
    ax.set_ylim(0.3, 1.01)
    ax.set_aspect("equal")
    legend_below(fig, ncols=1)
    return fig


@book_style
def plot_teacher_gains(tables: dict[int, pd.DataFrame]):
    """Each teacher's KD gain against its test log-loss and its accuracy, one colour per size."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_INCHES, 3.6), sharey=True)
    for (n, table), marker in zip(tables.items(), "os^"):
        for ax, column in zip(axes, ("log_loss", "accuracy_pct")):
            ax.errorbar(table[column], table.gain, yerr=[table.gain - table["CI low"], table["CI high"] - table.gain],
                        fmt=marker, capsize=3, label=f"{n:,} labelled examples")
    axes[0].set_xlabel("teacher's test log-loss")
    axes[1].set_xlabel("teacher's test accuracy (%)")
    axes[0].set_ylabel("KD gain (points)")
    for ax in axes:
        ax.axhline(0, color="gray", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    legend_below(fig)
    return fig


@book_style
def plot_grid(grids: dict[int, pd.DataFrame]):
    """Heat maps of the KD student's accuracy over (T, label_weight), one per training-set size."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(grids), 1, figsize=(COLUMN_INCHES, 3.4 * len(grids)))
    for ax, (n, table) in zip(np.atleast_1d(axes), grids.items()):
        image = ax.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(table.columns)), [f"{a:g}" for a in table.columns])
        ax.set_yticks(range(len(table.index)), [f"{t:g}" for t in table.index])
        middle = (table.to_numpy().min() + table.to_numpy().max()) / 2
        for (i, j), value in np.ndenumerate(table.to_numpy()):  # dark text on the bright cells
            ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                    color="black" if value > middle else "white")
        ax.set_xlabel("label_weight (weight of the hard labels)")
        ax.set_ylabel("temperature T")
        ax.set_title(f"{n:,} labelled examples: accuracy (%)")
        fig.colorbar(image, ax=ax).locator = MaxNLocator(5)
    return fig
