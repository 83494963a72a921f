"""Table 2 of the report: CIFAR-10, a ResNet-50-style teacher distilled into smaller ResNets.

Each row of the table is a :class:`CifarRow`: the student's blocks per stage, the stride of its
first stage, whether the KD loss is used, and whether it trains on the reduced set (the report's
first 500 training images of each class; a tenth of the training set in every profile). The teacher (blocks [3, 4, 6, 3], bottleneck blocks) is
trained once per seed, saved, and reused frozen for every student: offline distillation. Data
augmentation (random crops and flips) is applied to whole batches; the frozen teacher is run on
each augmented batch so that teacher and student see the same images.

The report does not say what its "Baseline" student is. Its abstract names ResNet-50 and
ResNet-18, and every other row is a variation of the bottleneck design; we take the baseline to
be a ResNet-18 (basic blocks [2, 2, 2, 2]), the standard small ResNet, distilled like the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

import kdlib
from kdlib.augment import ImageBatchTransform
from kdlib.bench import cost_ratios, inference_cost
from kdlib.checkpoints import cached_model, record_teacher
from kdlib.data import CIFAR10_MEAN, CIFAR10_STD, ImageDataset, first_per_class, load_cifar10
from kdlib.distributed import broadcast, one_for_all, rank, run_rows
from kdlib import experiments
from kdlib.experiments import KD_LABEL_WEIGHT, KD_TEMPERATURE, planned_rows, run_command, published_file
from kdlib.figures import COLUMN_INCHES, book_style, legend_below
from kdlib.models import cifar_resnet, seeded
from kdlib.precision import use_bfloat16
from kdlib.profile import check_profile
from kdlib.results import ResultFile, new_provenance
from kdlib.stats import PairedGap, paired_gap
from kdlib.threads import set_threads
from kdlib.terms import Term
from kdlib.train import TrainConfig, config_terms, predict_logits, train

TEACHER_BLOCKS = (3, 4, 6, 3)


@dataclass(frozen=True)
class CifarRow:
    """One row of Table 2."""

    name: str
    blocks: tuple[int, ...]
    block: str = "bottleneck"
    stride: int = 1
    kd: bool = True
    reduced: bool = False  # train on the reduced set (first images of each class) instead

    @property
    def architecture(self) -> str:
        return f"{self.block}{list(self.blocks)}_s{self.stride}".replace(" ", "")

    def row_id(self, seed: int) -> str:
        data = "reduced" if self.reduced else "full"
        return f"{self.architecture}/{'kd' if self.kd else 'nokd'}/{data}/seed{seed}"


TABLE2: tuple[CifarRow, ...] = (
    CifarRow("Baseline", (2, 2, 2, 2), block="basic"),
    CifarRow("Blocks = [1, 1, 1, 1]", (1, 1, 1, 1)),
    CifarRow("Blocks = [2, 2, 0, 0]", (2, 2, 0, 0)),
    CifarRow("Blocks = [1, 1, 0, 0]", (1, 1, 0, 0)),
    CifarRow("Blocks = [1, 1, 1, 1], Stride = 2", (1, 1, 1, 1), stride=2),
    CifarRow("Blocks = [1, 1, 1, 1], Stride = 4", (1, 1, 1, 1), stride=4),
    CifarRow("Ideal with no KD loss", (1, 1, 1, 1), stride=2, kd=False),
    CifarRow("Ideal on reduced train set", (1, 1, 1, 1), stride=2, reduced=True),
    CifarRow("Ideal on reduced train set with no KD loss", (1, 1, 1, 1), stride=2, kd=False, reduced=True),
)


# The report's claim: the ideal student with and without the KD loss, on the full and the reduced
# training set. These rows get more seeds than the others.
CLAIM_PAIRS: dict[str, tuple[str, str]] = {
    "full": ("Blocks = [1, 1, 1, 1], Stride = 2", "Ideal with no KD loss"),
    "reduced": ("Ideal on reduced train set", "Ideal on reduced train set with no KD loss"),
}
CLAIM_ROWS: tuple[str, ...] = tuple(name for pair in CLAIM_PAIRS.values() for name in pair)


@dataclass(frozen=True)
class CifarScale:
    """How big a CIFAR-10 run is in a profile, and its training recipe.

    One teacher (seed 0) is trained per run and serves every student seed: the seeds vary the
    students' initialisation, data order and augmentation, not the teacher.
    """

    width: float  # channel multiplier of every network (1.0: the real ResNets)
    teacher_epochs: int
    student_epochs: int
    reduced_epochs: int  # epochs on the reduced set (it has 10x fewer images per epoch)
    train_size: int | None  # None: all 50,000 training images (else the first train_size/10 per class)
    reduced_per_class: int  # size of the reduced set per class (the report: 500)
    test_size: int | None  # None: all 10,000 test images
    seeds: tuple[int, ...]  # student seeds of every row
    claim_seeds: tuple[int, ...] = ()  # extra student seeds of the CLAIM_ROWS
    batch_size: int = 128
    lr: float = 0.05
    warmup_epochs: int = 0
    teacher_label_smoothing: float = 0.0
    flip_test: bool = False  # test-time augmentation: average the logits of the image and its mirror
    timing_repeats: int = 20


SCALES: dict[str, CifarScale] = {
    "quick": CifarScale(width=0.125, teacher_epochs=3, student_epochs=1, reduced_epochs=10,
                        train_size=5_000, test_size=2_000, reduced_per_class=50, seeds=(0,), timing_repeats=5),
    "full": CifarScale(width=0.25, teacher_epochs=40, student_epochs=15, reduced_epochs=100,
                       train_size=None, test_size=None, reduced_per_class=500, seeds=(0, 1, 2),
                       claim_seeds=(3, 4), batch_size=512, lr=0.2, warmup_epochs=2,
                       teacher_label_smoothing=0.1, flip_test=True),
    "paper": CifarScale(width=1.0, teacher_epochs=40, student_epochs=15, reduced_epochs=100,
                        train_size=None, test_size=None, reduced_per_class=500, seeds=(0, 1, 2),
                        batch_size=512, lr=0.2, warmup_epochs=2, teacher_label_smoothing=0.1, flip_test=True),
}
TEACHER_SEED = 0


def device_for(profile: str) -> torch.device:
    """A CUDA GPU when one is present (``KDLIB_DEVICE=cpu`` forces the CPU), else the CPU."""
    import os

    wanted = os.environ.get("KDLIB_DEVICE", "").strip().lower()
    if wanted not in ("", "cpu", "cuda"):
        raise ValueError(f"KDLIB_DEVICE must be 'cpu' or 'cuda' (or unset), got {wanted!r}")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("KDLIB_DEVICE=cuda but no CUDA GPU is available; unset it to use the CPU")
    return torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")


def subset(dataset: ImageDataset, scale: CifarScale) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The profile's training and test tensors (uint8 images, int64 labels)."""
    train_idx = (torch.arange(len(dataset.train_labels)) if scale.train_size is None
                 else first_per_class(dataset.train_labels, scale.train_size // 10))
    test_n = scale.test_size or len(dataset.test_labels)
    test_idx = first_per_class(dataset.test_labels, test_n // 10) if scale.test_size else torch.arange(test_n)
    return (dataset.train_images[train_idx], dataset.train_labels[train_idx],
            dataset.test_images[test_idx], dataset.test_labels[test_idx])


def make_model(blocks: tuple[int, ...], block: str, stride: int, width: float, device: torch.device) -> nn.Module:
    return cifar_resnet(blocks, block=block, stride=stride, width=width).to(device, memory_format=torch.channels_last)


def train_config(scale: CifarScale, epochs: int, seed: int, kd: bool, device: torch.device,
                 label_smoothing: float = 0.0) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=scale.batch_size, lr=scale.lr, momentum=0.9,
                       weight_decay=5e-4, lr_schedule="cosine", warmup_epochs=scale.warmup_epochs, seed=seed,
                       temperature=KD_TEMPERATURE if kd else 1.0, label_weight=KD_LABEL_WEIGHT if kd else 1.0,
                       label_smoothing=label_smoothing, mixed_precision=use_bfloat16(device))


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, flip: bool) -> float:
    """Test accuracy; with ``flip`` the logits of each image and of its mirror image are averaged."""
    logits = predict_logits(model, images, 500, plain())
    if flip:
        logits = logits + predict_logits(model, images.flip(3), 500, plain())
    return (logits.argmax(dim=1) == labels).float().mean().item()


def load_or_train_teacher(profile: str, scale: CifarScale, data: tuple[Tensor, ...], source: str,
                          results: ResultFile, device: torch.device, progress: bool) -> nn.Module:
    """The frozen teacher: loaded from its verified checkpoint when one was made for exactly this
    recipe and data, else trained on the (augmented) training set and saved; recorded as the row
    ``teacher``."""
    x_train, y_train, x_test, y_test = data
    config = train_config(scale, scale.teacher_epochs, TEACHER_SEED, kd=False, device=device,
                          label_smoothing=scale.teacher_label_smoothing)
    key = {"experiment": "cifar10", "profile": profile, "scale": asdict(scale), "config": config.to_dict(),
           "data": source, "train_size": len(x_train), "blocks": TEACHER_BLOCKS, "kdlib": kdlib.__version__}

    def build() -> nn.Module:
        return seeded(lambda: make_model(TEACHER_BLOCKS, "bottleneck", 1, scale.width, device), TEACHER_SEED)

    def fit(model: nn.Module) -> dict[str, Any]:
        log = train(model, x_train, y_train, config, batch_transform=augmenting(), progress=progress)
        return {"train_wall_s": log.wall_s, "epoch_losses": log.epoch_losses}

    teacher, info = cached_model("cifar10_teacher", key, build, fit)
    recorded = results.has("teacher")
    record_teacher(results, "teacher", teacher, lambda: {
        "kind": "teacher", "seed": TEACHER_SEED, "blocks": list(TEACHER_BLOCKS), "config": config.to_dict(),
        **info, "accuracy": evaluate(teacher, x_test, y_test, scale.flip_test),
        "accuracy_single_view": evaluate(teacher, x_test, y_test, flip=False)}, ("accuracy", 5e-4))
    if progress and not recorded:
        print(f"teacher: accuracy {results.get('teacher')['accuracy']:.4f}", flush=True)
    return teacher


def augmenting() -> ImageBatchTransform:
    """Training input: random crops and flips, then normalisation."""
    return ImageBatchTransform(CIFAR10_MEAN, CIFAR10_STD, augment=True)


def plain() -> ImageBatchTransform:
    """Evaluation input: normalisation only."""
    return ImageBatchTransform(CIFAR10_MEAN, CIFAR10_STD, augment=False)


def run_student(row: CifarRow, seed: int, scale: CifarScale, teacher: nn.Module, data: tuple[Tensor, ...],
                device: torch.device, progress: bool) -> dict[str, Any]:
    """Train one student of Table 2 and return its result row."""
    return train_student(row, seed, scale, teacher, data, device, progress)[1]


MoreTerms = Callable[[nn.Module, Tensor], "list[Term]"]
"""Given the student and the labels of its training set, the terms a method adds to the loss."""


def train_student(row: CifarRow, seed: int, scale: CifarScale, teacher: nn.Module, data: tuple[Tensor, ...],
                  device: torch.device, progress: bool, more_terms: MoreTerms | None = None,
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """Train one student of ``row`` and return it with its result row. ``more_terms(student,
    labels)``, if given, returns the terms (:mod:`kdlib.terms`) a method adds to the loss of
    ``row`` (e.g. a FitNets hint): they are made after the student, from the same random
    generator, so that a seed gives the same student with or without them."""
    x_train, y_train, x_test, y_test = data
    epochs = scale.student_epochs
    if row.reduced:
        keep = first_per_class(y_train, scale.reduced_per_class)
        x_train, y_train = x_train[keep], y_train[keep]
        epochs = scale.reduced_epochs
    student = seeded(lambda: make_model(row.blocks, row.block, row.stride, scale.width, device), seed)
    config = train_config(scale, epochs, seed, kd=row.kd, device=device)
    terms = None
    if more_terms is not None:
        terms = [*config_terms(config, distilling=row.kd), *more_terms(student, y_train)]
    log = train(student, x_train, y_train, config, batch_transform=augmenting(), progress=progress,
                teacher=teacher if (row.kd or terms) else None, terms=terms)
    return student, {"kind": "student", "name": row.name, "seed": seed, "row": asdict(row),
                     "config": config.to_dict(), "train_size": len(x_train),
                     "accuracy": evaluate(student, x_test, y_test, scale.flip_test),
                     "accuracy_single_view": evaluate(student, x_test, y_test, flip=False),
                     "train_wall_s": log.wall_s, "samples_per_s": log.samples_per_s,
                     "epoch_losses": log.epoch_losses}


def measure_inference(scale: CifarScale, x_test: Tensor) -> dict[str, Any]:
    """Inference cost of the teacher and of every student architecture, always on the CPU with
    one thread (the edge-device setting the report has in mind), whatever device trained them."""
    images = plain()(x_test[:256])
    torch.manual_seed(0)
    models = {"teacher": cifar_resnet(TEACHER_BLOCKS, width=scale.width)}
    for row in TABLE2:
        models.setdefault(row.architecture, cifar_resnet(row.blocks, row.block, row.stride, scale.width))
    return {name: inference_cost(model.to(memory_format=torch.channels_last), images, large_batch=256,
                                 repeats=scale.timing_repeats, threads=1).to_dict()
            for name, model in models.items()}


@dataclass(frozen=True)
class PlannedStudent:
    """One planned student: a row of Table 2 and a seed."""

    row: CifarRow
    seed: int

    def row_id(self) -> str:
        return self.row.row_id(self.seed)


def planned_runs(scale: CifarScale, rows: tuple[CifarRow, ...]) -> list[tuple[CifarRow, int]]:
    """Every (row, seed) student run, seed by seed, so that an interrupted run has whole seeds."""
    runs = [(row, seed) for seed in scale.seeds for row in rows]
    runs += [(row, seed) for seed in scale.claim_seeds for row in rows if row.name in CLAIM_ROWS]
    return runs


def run_cifar(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
              rows: tuple[CifarRow, ...] = TABLE2, dataset: ImageDataset | None = None,
              command: str | None = None, time_budget_s: float | None = None,
              inference: bool = True) -> dict[str, Any]:
    """Run (or resume) the CIFAR-10 experiment at ``profile`` scale; returns the result data.

    ``rows`` selects rows of Table 2 (default: all nine). With ``out`` each row is saved as it
    finishes and rows already in the file are skipped. ``time_budget_s``: start no new row after
    that many seconds (resume later). ``inference=False`` skips the CPU timing of the networks
    (e.g. on a GPU machine whose CPU is not the one the book reports).
    """
    from kdlib.experiments import TimeBudget, paper_cpu_estimate
    from kdlib.profile import check_paper_on_cpu

    scale = SCALES[check_profile(profile)]
    where = rank()  # under torchrun: one GPU per rank, rank 0 writes the file
    device = where.device if where.world > 1 else device_for(profile)
    budget = TimeBudget(time_budget_s)
    if rows:
        check_paper_on_cpu(profile, str(device), "cifar10", paper_cpu_estimate("cifar10"))
    threads = set_threads("resnet")
    results = ResultFile(out if where.is_main else None, "cifar10-table2", new_provenance(command, profile=profile, scale=asdict(scale),
                                                               dataset="CIFAR-10", device=str(device)))
    dataset = dataset if dataset is not None else load_cifar10()
    results.use_data_source(dataset.source)
    results.run_provenance["environment"]["torch_threads"] = threads
    results.run_provenance["environment"]["ranks"] = where.world
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = tuple(t.to(device) for t in subset(dataset, scale))
    todo = broadcast([PlannedStudent(row, seed) for row, seed in planned_runs(scale, rows)
                      if not results.has(row.row_id(seed))], where)
    if broadcast(bool(todo) and not budget.spent(), where):
        teacher = one_for_all(
            lambda: load_or_train_teacher(profile, scale, data, dataset.source, results, device, progress),
            lambda: make_model(TEACHER_BLOCKS, "bottleneck", 1, scale.width, device), where).eval()

        def report(i: int, n: int, row_id: str, result: dict[str, Any]) -> None:
            if progress:
                print(f"{i}/{n} {row_id}: accuracy {result['accuracy']:.4f}, {result['train_wall_s']:.0f} s",
                      flush=True)

        run_rows(todo, lambda s: run_student(s.row, s.seed, scale, teacher, data, device, progress),
                 results.put, budget.spent, where, report)
    if where.is_main and inference and not budget.spent() and "inference" not in results.data:
        results.set("inference", measure_inference(scale, data[2].cpu()))
    results.save()
    return results.data


PRECISION_ROW = CLAIM_PAIRS["reduced"][1]  # the ideal student on the reduced set, without a teacher


@dataclass(frozen=True)
class PrecisionRun:
    """A run of the precision check: the reduced-set ideal student (no teacher) trained in
    ``precision`` (``"float32"`` or ``"bfloat16"``) with ``seed``; its row id comes from these."""

    precision: str
    seed: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def row_id(self) -> str:
        return f"{self.precision}/seed{self.seed}"


PRECISIONS = ("float32", "bfloat16")
PRECISION_SEEDS = (0, 1, 2)


def precision_runs(seeds: tuple[int, ...]) -> list[PrecisionRun]:
    """Both precisions for each seed, paired."""
    return [PrecisionRun(precision, seed) for seed in seeds for precision in PRECISIONS]


def run_precision_check(profile: str = "full", out: Path | str | None = None,
                        seeds: tuple[int, ...] = PRECISION_SEEDS,
                        epochs: int = 30, dataset: ImageDataset | None = None, command: str | None = None,
                        progress: bool = True, time_budget_s: float | None = None) -> dict[str, Any]:
    """Does the bfloat16 fast path train as well as float32? The ideal student on the reduced set
    (no teacher), ``epochs`` epochs at the profile's width and recipe, in both precisions, paired
    by seed, on the CPU (:func:`precision_runs`, through the experiments' one driver).
    ``time_budget_s``: start no new row after that many seconds."""
    from kdlib.experiments import TimeBudget, paper_cpu_estimate
    from kdlib.profile import check_paper_on_cpu

    scale = SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    check_paper_on_cpu(profile, "cpu", "cifar10-precision", paper_cpu_estimate("cifar10-precision"))
    row = next(r for r in TABLE2 if r.name == PRECISION_ROW)
    device = torch.device("cpu")
    results = ResultFile(out, "cifar10-precision", new_provenance(command, profile=profile, scale=asdict(scale),
                                                                  dataset="CIFAR-10", device=str(device),
                                                                  epochs=epochs, row=PRECISION_ROW,
                                                                  seeds=list(seeds)))
    results.run_provenance["environment"]["torch_threads"] = set_threads("resnet")
    dataset = dataset if dataset is not None else load_cifar10()
    results.use_data_source(dataset.source)
    x_train, y_train, x_test, y_test = subset(dataset, scale)
    keep = first_per_class(y_train, scale.reduced_per_class)

    def train_one(run: PrecisionRun) -> dict[str, Any]:
        student = seeded(lambda: make_model(row.blocks, row.block, row.stride, scale.width, device), run.seed)
        config = replace(train_config(scale, epochs, run.seed, kd=False, device=device),
                         mixed_precision=run.precision == "bfloat16")
        log = train(student, x_train[keep], y_train[keep], config, batch_transform=augmenting())
        return {"precision": run.precision, "seed": run.seed, "config": config.to_dict(),
                "train_wall_s": log.wall_s, "samples_per_s": log.samples_per_s,
                "accuracy": evaluate(student, x_test, y_test, scale.flip_test)}

    def report(i: int, n: int, row_id: str, result: dict[str, Any]) -> None:
        if progress:
            print(f"{i}/{n} {row_id}: accuracy {result['accuracy']:.4f}, {result['train_wall_s']:.0f} s",
                  flush=True)

    todo = [run for run in precision_runs(seeds) if not results.has(run.row_id())]
    run_rows(todo, train_one, results.put, budget.spent, rank(), report)
    results.save()
    return results.data


# ------------------------------------------------------------------------------------------------
# Tables for the chapter


def precision_frame(data: dict[str, Any]) -> pd.DataFrame:
    """The precision check's accuracy (%) by seed (rows) and precision (columns), from the
    planned rows of the recorded seeds (a missing one raises :class:`kdlib.experiments.MissingRows`)."""
    seeds = tuple(data["provenance"].get("seeds", PRECISION_SEEDS))  # the default, where not recorded
    command = run_command("cifar10-precision", data)
    runs = pd.DataFrame(planned_rows(data, [run.row_id() for run in precision_runs(seeds)], command))
    return runs.pivot(index="seed", columns="precision", values="accuracy")[list(PRECISIONS)] * 100


def paper_table2() -> pd.DataFrame:
    """The report's Table 2, as published."""
    return pd.read_csv(published_file("paper/table2_cifar10.csv"))


load_published = partial(experiments.load_published, "cifar10")
"""The committed full-profile result file of this experiment, parsed."""


def summary_table(data: dict[str, Any], rows: tuple[CifarRow, ...] = TABLE2) -> pd.DataFrame:
    """Table 2 as we measured it: accuracy (mean, std over seeds), training time, cost ratios.
    Every row of ``rows`` must have a run for each seed of the recorded scale (rows with more
    seeds, for a claim, keep them all): a missing run raises :class:`kdlib.experiments.MissingRows`."""
    seeds = data["provenance"]["scale"]["seeds"]
    command = run_command("cifar10", data)
    planned_rows(data, [row.row_id(seed) for row in rows for seed in seeds], command)
    lines = []
    for row in rows:
        runs = [r for r in data["rows"].values() if r.get("kind") == "student" and r["name"] == row.name]
        acc = pd.Series([r["accuracy"] for r in runs]) * 100
        ratios = cost_ratios(data["inference"]["teacher"], data["inference"][row.architecture])
        lines.append({"experiment": row.name, "seeds": len(runs), "accuracy_pct": acc.mean(),
                      "accuracy_std": acc.std(ddof=1) if len(runs) > 1 else float("nan"),
                      "training_time_s": sum(r["train_wall_s"] for r in runs) / len(runs), **ratios})
    return pd.DataFrame(lines)


def side_by_side(data: dict[str, Any]) -> pd.DataFrame:
    """The report's Table 2 next to ours, row by row."""
    paper = paper_table2().set_index("experiment")
    ours = summary_table(data).set_index("experiment")
    return pd.DataFrame({
        "paper acc %": paper.accuracy_pct,
        "our acc %": ours.accuracy_pct.round(2),
        "paper train s": paper.training_time_s,
        "our train s": ours.training_time_s.round(0),
        "paper time ratio": paper.inference_time_ratio_teacher_over_student,
        "our latency ratio": ours.latency_ratio.round(2),
        "our throughput ratio": ours.throughput_ratio.round(2),
        "FLOP ratio": ours.flop_ratio.round(2),
    }).loc[[r.name for r in TABLE2 if r.name in ours.index]]


def run_history(data: dict[str, Any]) -> pd.DataFrame:
    """The runs that wrote a result file, in order: the first (``data["provenance"]``) and each
    resume (``data["resumed"]``), as recorded in the file and nothing more.

    Per run: when it started (UTC, to the minute), its command (without ``--out``), the git commit it recorded
    (its first seven hex digits, and ``+dirty`` when the record has it), the machine (GPU name,
    else the CPU and its cores) and, from its command line, whether it could train rows (no
    ``--inference-only``) and whether it could time inference (no ``--no-inference``). A commit
    ending in ``+dirty`` was recorded from a working tree that differed from that commit, so
    the commit alone does not identify the code that ran.
    """
    import re

    lines = []
    for run in [data["provenance"], *data.get("resumed", [])]:
        env, command = run["environment"], run["command"]
        on_gpu = run.get("device", "cpu").startswith("cuda") and env.get("cuda_device")
        dirty = run["git_commit"].endswith("+dirty")
        started = run["started_utc"].replace("+00:00", "").replace("T", " ")[:16]
        lines.append({"started (UTC)": started,
                      "command": re.sub(r" --out \S+", "", command),
                      "git commit": run["git_commit"][:7] + ("+dirty" if dirty else ""),
                      "machine": env["cuda_device"] if on_gpu else f"CPU, {env['cpu_count']} cores",
                      "trains rows": "--inference-only" not in command,
                      "times inference": "--no-inference" not in command})
    return pd.DataFrame(lines)


def report_ratio_fit(data: dict[str, Any]) -> pd.DataFrame:
    """Per row of Table 2: the report's teacher/student "inference time ratio" divided by each
    of our ratios for the same row (latency at batch 1, throughput at the large batch, FLOPs).

    A reading of the report's timings (for instance, that it timed large batches) predicts one
    of these quotients to be near 1 in *every* row, not only in one. Our ratios are measured at
    the width of the result file, not at the report's full width, so a quotient near 1 is at
    most a hint.
    """
    paper = paper_table2().set_index("experiment").inference_time_ratio_teacher_over_student
    ours = summary_table(data).set_index("experiment")
    return pd.DataFrame({
        "report time ratio": paper[ours.index],
        "report / latency": paper[ours.index] / ours.latency_ratio,
        "report / throughput": paper[ours.index] / ours.throughput_ratio,
        "report / FLOP": paper[ours.index] / ours.flop_ratio,
    })


def teacher_accuracy(data: dict[str, Any]) -> float:
    """Mean test accuracy (%) of the teachers."""
    runs = [r["accuracy"] for r in data["rows"].values() if r.get("kind") == "teacher"]
    return 100 * sum(runs) / len(runs)


@book_style
def plot_accuracy_vs_speedup(data: dict[str, Any]):
    """Each student's accuracy, and its measured speed-up over the teacher at batch 1 and 256."""
    import matplotlib.pyplot as plt

    table = summary_table(data).sort_values("accuracy_pct")
    names = [n.replace("Blocks = ", "").replace(" train set", "").replace(" loss", "") for n in table.experiment]
    fig, (left, right) = plt.subplots(1, 2, figsize=(COLUMN_INCHES, 4.4), sharey=True)
    rows = range(len(table))
    left.errorbar(table.accuracy_pct, rows, xerr=table.accuracy_std.fillna(0), fmt="D", color="#2c3e50",
                  capsize=3, label="student (sd over seeds)")
    left.axvline(teacher_accuracy(data), color="gray", ls="--", label="teacher")
    left.set_yticks(rows, names)
    left.set_xlabel("test accuracy (%)")
    left.grid(axis="y", color="#dddddd")
    for column, marker, label in (("latency_ratio", "o", "batch 1"), ("throughput_ratio", "s", "batch 256")):
        right.plot(table[column], rows, marker, label=label)
    right.set_xscale("log")
    right.set_xticks([2, 5, 10, 20], ["2", "5", "10", "20"])
    right.set_xticks([], minor=True)
    right.set_xlabel("speed-up over the teacher")
    right.grid(axis="y", color="#dddddd")
    legend_below(fig, left, right)
    return fig


@book_style
def plot_kd_effect(data: dict[str, Any]):
    """The ideal student with and without the KD loss, on the full and the reduced training set."""
    import matplotlib.pyplot as plt

    table = summary_table(data).set_index("experiment")
    pairs = {f"{setting} training set": pair for setting, pair in CLAIM_PAIRS.items()}
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.6))
    for i, (with_kd, without_kd) in enumerate(pairs.values()):
        for offset, name, label in ((-0.2, with_kd, "with KD loss"), (0.2, without_kd, "without KD loss")):
            if name in table.index:
                ax.bar(i + offset, table.loc[name, "accuracy_pct"], width=0.4,
                       yerr=table.loc[name, "accuracy_std"] if table.loc[name, "seeds"] > 1 else None,
                       color="#2c3e50" if offset < 0 else "#c0392b", label=label if i == 0 else None, capsize=3)
    ax.set_xticks(range(len(pairs)), list(pairs))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("The ideal student with and without the KD loss")
    legend_below(fig)
    return fig


def claim_gaps(data: dict[str, Any]) -> dict[str, PairedGap]:
    """What the KD loss adds to the ideal student (percentage points), paired by seed, with a 95%
    confidence interval, on the full (``"full"``) and the reduced (``"reduced"``) training set."""
    gaps = {}
    for key, (with_kd, without_kd) in CLAIM_PAIRS.items():
        runs = {name: {r["seed"]: 100 * r["accuracy"] for r in data["rows"].values()
                       if r.get("kind") == "student" and r["name"] == name} for name in (with_kd, without_kd)}
        seeds = sorted(set(runs[with_kd]) & set(runs[without_kd]))
        gaps[key] = paired_gap([runs[with_kd][s] for s in seeds], [runs[without_kd][s] for s in seeds])
    return gaps


def kd_gains(accuracy_pct: pd.Series) -> dict[str, float]:
    """What the KD loss adds to the ideal student, in percentage points, on the full and the
    reduced training set, from accuracies indexed by experiment name (ours or the report's)."""
    return {key: accuracy_pct[with_kd] - accuracy_pct[without_kd]
            for key, (with_kd, without_kd) in CLAIM_PAIRS.items()}


def closeness(data: dict[str, Any]) -> pd.DataFrame:
    """Per row: our mean accuracy minus the report's, and the mean final-epoch training loss (the
    distillation loss for KD rows, the cross-entropy otherwise: compare KD rows with KD rows)."""
    paper = paper_table2().set_index("experiment").accuracy_pct
    ours = summary_table(data).set_index("experiment")
    lines = []
    for row in TABLE2:
        runs = [r for r in data["rows"].values() if r.get("kind") == "student" and r["name"] == row.name]
        lines.append({"experiment": row.name, "loss": "KD" if row.kd else "labels",
                      "report acc %": paper[row.name], "our acc %": ours.loc[row.name, "accuracy_pct"],
                      "ours minus report": ours.loc[row.name, "accuracy_pct"] - paper[row.name],
                      "final train loss": sum(r["epoch_losses"][-1] for r in runs) / len(runs)})
    return pd.DataFrame(lines)
