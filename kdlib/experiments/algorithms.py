"""Chapter 8: the report's other algorithms, measured against plain KD on the same budget.

Three experiments, each paired by seed (students of one seed share their initial weights, data
order and augmentation, and differ only in the method):

* ``mnist-quantized``: MNIST 784-300-10 students trained with quantization-aware training (QAT) at 8, 4
  and 2 bits, with (``kd``) and without (``nokd``) the frozen full-precision teacher, next to
  float students; the 8-bit students are converted into real int8 models and timed.
* ``mnist-adversarial``: MNIST students with labels only, with KD, and with KD plus a discriminator
  (:mod:`kdlib.methods.adversarial`, a term of :mod:`kdlib.terms`), with 1,000 and with 60,000 labelled
  images, with training curves.
* ``cifar``: CIFAR-10 students on the reduced set (500 images per class) with labels only,
  with KD, and with KD plus a term on features: a FitNets hint or attention transfer
  (:mod:`kdlib.features`), or CRD (:mod:`kdlib.methods.crd`); the first two are then
  fine-tuned with QAT at every bit width (with and without the teacher), and converted to
  int8 at 8 bits.

``python -m kdlib.experiments algorithms --profile full`` writes ``results/algorithms_full.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from kdlib.methods.adversarial import AdversarialTerm
from kdlib.bench import latency_and_throughput
from kdlib.data import ImageDataset, load_cifar10, load_mnist
from kdlib import experiments
from kdlib.experiments import KD_LABEL_WEIGHT, KD_TEMPERATURE, TimeBudget, cifar, planned_rows, run_command
from kdlib.experiments.mnist import balanced_subset, prepare_inputs
from kdlib.experiments.regimes import Teachers, epochs_for
from kdlib.methods.crd import CRDTerm
from kdlib.distributed import rank, run_rows
from kdlib.features import stage_shapes
from kdlib.methods import AttentionTerm, FitNetsTerm
from kdlib.figures import COLUMN_INCHES, book_style, legend_below
from kdlib.models import mlp, seeded
from kdlib.profile import check_profile
from kdlib.quantize import freeze, model_size_bytes, prepare_qat, to_int8
from kdlib.results import ResultFile, new_provenance
from kdlib.terms import Term
from kdlib.stats import PairedGap, gap_by_seed, seed_differences
from kdlib.threads import set_threads
from kdlib.train import TrainConfig, accuracy, config_terms, predict_logits, train

PARTS = ("mnist-quantized", "mnist-adversarial", "cifar")
KD = {"temperature": KD_TEMPERATURE, "label_weight": KD_LABEL_WEIGHT}  # the course's distillation settings
FLOAT_BITS = 32  # how float students are written in the ``bits`` column
ADVERSARIAL_WEIGHT = 0.1
# FitNets: the student's second stage is guided by the teacher stage of the same resolution
STUDENT_BLOCKS, STUDENT_STRIDE, GUIDED_STAGE = (1, 1, 1, 1), 2, "stage2"
HINT_WEIGHT = 1.0
AT_WEIGHT = 1000.0
"""Attention transfer's weight beta, the authors' and RepDistiller's (with their form of the term,
``squared=True``). Each of our attention maps has a quarter of the positions of theirs (16x16 to
4x4 against 32x32 to 8x8 in Tian et al.'s resnet8x4), so beta / (H W), the weight on each
position, is four times theirs; 250 would match theirs per position (chapter 8 says why its
one run at 250 is not published)."""
CRD_WEIGHT, CRD_NEGATIVES = 0.8, 16_384  # RepDistiller's, for 50,000 training images
FEATURE_METHODS = ("fitnets", "at", "crd")  # KD plus a term on features (method_terms)
REDUCED_ROW = cifar.CifarRow("Ideal on reduced train set", STUDENT_BLOCKS, stride=STUDENT_STRIDE, reduced=True)


@dataclass(frozen=True)
class AlgorithmsScale:
    """What the experiments cover in a profile."""

    mnist_teacher: str  # a teacher of chapter 7 (kdlib.experiments.regimes.TEACHERS)
    mnist_train_size: int  # students of the quantization sweep (a class-balanced subset)
    mnist_seeds: tuple[int, ...]
    bits: tuple[int, ...]
    adversarial_sizes: tuple[int, ...]
    cifar: cifar.CifarScale  # the CIFAR-10 recipe (teacher and reduced-set students)
    cifar_seeds: tuple[int, ...]
    qat_epochs: int  # CIFAR-10: epochs of QAT fine-tuning of a trained float student
    timing_repeats: int = 50


SCALES: dict[str, AlgorithmsScale] = {
    "quick": AlgorithmsScale(
        mnist_teacher="report (1 epoch)", mnist_train_size=5_000, mnist_seeds=(0,), bits=(8, 2), adversarial_sizes=(1_000,),
        cifar=cifar.CifarScale(width=0.125, teacher_epochs=2, student_epochs=1, reduced_epochs=3,
                               train_size=2_000, test_size=1_000, reduced_per_class=50, seeds=(0,)),
        cifar_seeds=(0,), qat_epochs=1, timing_repeats=10),
    "full": AlgorithmsScale(
        mnist_teacher="5 epochs", mnist_train_size=60_000, mnist_seeds=(0, 1, 2), bits=(8, 4, 2), adversarial_sizes=(1_000, 60_000),
        cifar=cifar.CifarScale(width=0.125, teacher_epochs=8, student_epochs=1, reduced_epochs=20,
                               train_size=None, test_size=None, reduced_per_class=500, seeds=(0, 1, 2),
                               batch_size=128, lr=0.05, warmup_epochs=1, teacher_label_smoothing=0.1,
                               flip_test=True),
        cifar_seeds=(0, 1, 2), qat_epochs=3),
}
SCALES["paper"] = SCALES["full"]


def mnist_config(train_size: int, seed: int, kd: bool) -> TrainConfig:
    """Chapter 7's student recipe: SGD, cosine decay, about 1,500 steps (3 epochs at least)."""
    return TrainConfig(epochs=epochs_for(train_size, 32), batch_size=32, lr=0.02, lr_schedule="cosine", seed=seed,
                       **(KD if kd else {}))


def deployment_cost(model: nn.Module, inputs: Tensor, repeats: int, large_batch: int) -> dict[str, Any]:
    """Size in bytes, latency at batch 1 and throughput at ``large_batch``, on one CPU thread."""
    latency, throughput = latency_and_throughput(model, inputs.cpu(), large_batch, repeats, threads=1)
    return {"size_bytes": model_size_bytes(model), "latency_s": latency.median_s, "throughput_per_s": throughput}


def int8_fields(qat_model: nn.Module, float_model: nn.Module, x_test: Tensor, y_test: Tensor, repeats: int,
                large_batch: int, evaluate=accuracy) -> dict[str, Any]:
    """Convert an 8-bit QAT model to int8 and measure it against its float twin (same
    architecture, float weights): accuracy of the integer model, its agreement with the
    fake-quantized model, and both models' size, latency and throughput."""
    integer = to_int8(qat_model)
    with torch.inference_mode():
        fake = predict_logits(qat_model, x_test[:1000]).argmax(1)
        real = predict_logits(integer, x_test[:1000]).argmax(1)
    return {"accuracy_int8": evaluate(integer, x_test, y_test),
            "int8_agreement_with_fake_quant": (fake == real).float().mean().item(),
            "int8": deployment_cost(integer, x_test, repeats, large_batch),
            "float": deployment_cost(float_model.eval(), x_test, repeats, large_batch)}


# ------------------------------------------------------------------------------------------------
# The runs


@dataclass(frozen=True)
class QuantizedRun:
    """A 784-300-10 MNIST student of the quantization sweep: ``method`` ``"kd"`` or ``"nokd"``,
    trained in float (``bits`` :data:`FLOAT_BITS`) or with ``bits``-bit QAT, on a class-balanced
    subset of ``train_size`` images; its row id comes from its fields."""

    method: str
    bits: int
    seed: int

    def row_id(self) -> str:
        return quantized_row_id("MNIST", self.method, self.bits, self.seed)


@dataclass(frozen=True)
class AdversarialRun:
    """A 784-300-10 MNIST student of the adversarial comparison: ``method`` ``"nokd"``, ``"kd"``
    or ``"adversarial"`` (KD plus a discriminator), on ``train_size`` labelled images."""

    method: str
    train_size: int
    seed: int

    def row_id(self) -> str:
        return adversarial_row_id(self.method, self.train_size, self.seed)


def quantized_runs(scale: AlgorithmsScale) -> list[QuantizedRun]:
    """Every run of the MNIST quantization sweep, seed by seed."""
    return [QuantizedRun(method, bits, seed) for seed in scale.mnist_seeds for bits in (FLOAT_BITS, *scale.bits)
            for method in ("kd", "nokd")]


def adversarial_runs(scale: AlgorithmsScale) -> list[AdversarialRun]:
    """Every run of the MNIST adversarial comparison, size by size and seed by seed."""
    return [AdversarialRun(method, n, seed) for n in scale.adversarial_sizes for seed in scale.mnist_seeds
            for method in ("nokd", "kd", "adversarial")]


def run_quantized_student(run: QuantizedRun, scale: AlgorithmsScale, data: tuple[Tensor, ...],
                          soft: Tensor) -> dict[str, Any]:
    """Train one student of the quantization sweep (float, or QAT at ``run.bits``); at 8 bits,
    also convert it to int8 and time it against its float twin."""
    x_train, y_train, x_test, y_test = data
    keep = balanced_subset(y_train, scale.mnist_train_size, run.seed)
    config = mnist_config(len(keep), run.seed, kd=run.method == "kd")
    student = seeded(lambda: mlp([300]), run.seed)
    if run.bits != FLOAT_BITS:
        student = prepare_qat(student, run.bits, x_train[:32])
    log = train(student, x_train[keep], y_train[keep], config,
                teacher_logits=soft[keep] if run.method == "kd" else None)
    if run.bits != FLOAT_BITS:
        freeze(student)
    row = {"experiment": "quantized", "dataset": "MNIST", "method": run.method, "bits": run.bits,
           "seed": run.seed, "train_size": len(keep), "config": config.to_dict(),
           "accuracy": accuracy(student, x_test, y_test), "train_wall_s": log.wall_s}
    if run.bits == 8:
        float_twin = seeded(lambda: mlp([300]), run.seed)
        row.update(int8_fields(student, float_twin, x_test, y_test, scale.timing_repeats, 1000))
    return row


def run_adversarial_student(run: AdversarialRun, data: tuple[Tensor, ...], soft: Tensor) -> dict[str, Any]:
    """Train one student of the adversarial comparison, with its test accuracy after each epoch
    (and, for the adversarial method, the discriminator's accuracy)."""
    x_train, y_train, x_test, y_test = data
    keep = balanced_subset(y_train, run.train_size, run.seed)
    config = mnist_config(run.train_size, run.seed, kd=run.method != "nokd")
    student = seeded(lambda: mlp([300]), run.seed)
    term = AdversarialTerm(10, weight=ADVERSARIAL_WEIGHT, temperature=KD["temperature"], seed=run.seed) \
        if run.method == "adversarial" else None

    def curve(epoch: int, model: nn.Module) -> dict[str, float]:
        point = {"epoch": epoch, "test_accuracy": accuracy(model, x_test, y_test)}
        if term is not None:  # train has called its end_epoch()
            point["discriminator_accuracy"] = term.history[-1]
        return point

    # the discriminator is one more term after KD's (the same weights as extra_loss=term)
    terms = None if term is None else [*config_terms(config, distilling=True), term]
    log = train(student, x_train[keep], y_train[keep], config,
                teacher_logits=soft[keep] if run.method != "nokd" else None, on_epoch=curve, terms=terms)
    return {"experiment": "adversarial", "dataset": "MNIST", "method": run.method, "seed": run.seed,
            "train_size": run.train_size, "config": config.to_dict(), "accuracy": accuracy(student, x_test, y_test),
            "history": log.history, "train_wall_s": log.wall_s}


def run_mnist_parts(runs: list[QuantizedRun | AdversarialRun], scale: AlgorithmsScale, data: tuple[Tensor, ...],
                    teachers: Teachers, results: ResultFile, progress: bool, budget: TimeBudget) -> None:
    """Train the planned MNIST ``runs`` not yet in ``results``, through the experiments' one
    driver (:func:`kdlib.distributed.run_rows`: budget, progress, saving as each row finishes)."""
    todo = [run for run in runs if not results.has(run.row_id())]
    if not todo or budget.spent():
        return
    soft = teachers.train_logits(scale.mnist_teacher)

    def train_one(run: QuantizedRun | AdversarialRun) -> dict[str, Any]:
        if isinstance(run, QuantizedRun):
            return run_quantized_student(run, scale, data, soft)
        return run_adversarial_student(run, data, soft)

    run_rows(todo, train_one, results.put, budget.spent, rank(),
             lambda i, n, row_id, row: report(progress, row_id, row))


def stage_pairs(student: nn.Module, teacher: nn.Module) -> dict[str, str]:
    """Each stage of the student and the first teacher stage whose output has the same
    resolution: ``{student stage: teacher stage}`` (FitNets guides one of them, attention
    transfer matches all)."""
    student_shapes, teacher_shapes = stage_shapes(student), stage_shapes(teacher)
    pairs = {}
    for stage, (_, height, _) in student_shapes.items():
        same = [t for t, shape in teacher_shapes.items() if shape[1] == height]
        if same:
            pairs[stage] = same[0]
    return pairs


def penultimate(model: nn.Module) -> tuple[str, int]:
    """The name of the pooled, flattened features of a ``cifar_resnet`` or a fast network
    (:func:`kdlib.fastnet.fast_cifar_net`), the ``Flatten`` of its head, and their size (the
    input of its classifier, the head's ``Linear``): what CRD embeds."""
    classifier = next(m for m in model.head if isinstance(m, nn.Linear))
    return "head.1", classifier.in_features


def method_terms(method: str, teacher: nn.Module, weight: float | None = None) -> cifar.MoreTerms:
    """What ``method`` adds to KD on the reduced set, as terms (:mod:`kdlib.terms`):

    * ``fitnets``: a hint from the teacher stage of the same resolution to the student's
      :data:`GUIDED_STAGE`, weight :data:`HINT_WEIGHT`;
    * ``at``: attention transfer at every student stage with a teacher stage of the same
      resolution, in the form of the authors' code and RepDistiller, weight :data:`AT_WEIGHT`;
    * ``crd``: contrastive representation distillation on the penultimate features, with
      RepDistiller's settings (weight 0.8, 128-number embeddings, temperature 0.07) and as
      many negatives, in proportion to the training set, as its 16,384 of CIFAR-100's 50,000.

    ``weight``, if given, replaces the method's weight (another recipe may need another one).
    """
    if method not in FEATURE_METHODS:
        raise ValueError(f"no feature method {method!r}: choose one of {FEATURE_METHODS}")

    def more_terms(student: nn.Module, labels: Tensor) -> list[Term]:
        pairs = stage_pairs(student, teacher)
        if method == "fitnets":
            hint = pairs[GUIDED_STAGE]
            channels = stage_shapes(student)[GUIDED_STAGE][0], stage_shapes(teacher)[hint][0]
            return [FitNetsTerm(GUIDED_STAGE, hint, *channels, weight=HINT_WEIGHT if weight is None else weight)]
        if method == "at":
            return [AttentionTerm(list(pairs.items()), weight=AT_WEIGHT if weight is None else weight, squared=True)]
        (s_layer, s_dim), (t_layer, t_dim) = penultimate(student), penultimate(teacher)
        negatives = round(CRD_NEGATIVES * len(labels) / 50_000)
        return [CRDTerm(s_layer, t_layer, s_dim, t_dim, labels, weight=CRD_WEIGHT if weight is None else weight,
                         negatives=negatives)]

    return more_terms


def quantized_row_id(dataset: str, method: str, bits: int, seed: int) -> str:
    """The row id of a student of the quantization experiment (``bits`` :data:`FLOAT_BITS`: the
    float student; on CIFAR-10 that is the feature experiment's row)."""
    if dataset == "CIFAR-10":
        return feature_row_id(method, seed) if bits == FLOAT_BITS else f"cifar/quantized/{method}/bits{bits}/seed{seed}"
    return f"mnist/quantized/{method}/bits{bits}/seed{seed}"


def adversarial_row_id(method: str, train_size: int, seed: int) -> str:
    """The row id of a student of the MNIST adversarial comparison."""
    return f"mnist/adversarial/{method}/n{train_size}/seed{seed}"


def feature_row_id(method: str, seed: int) -> str:
    """The row id of a reduced-set CIFAR-10 student (``method`` "nokd", "kd" or a feature method)."""
    return f"cifar/features/{method}/seed{seed}"


def run_cifar_parts(scale: AlgorithmsScale, profile: str, dataset: ImageDataset, results: ResultFile,
                    progress: bool, budget: TimeBudget) -> None:
    """Reduced-set students: labels only, KD, and KD plus each feature method; then QAT fine-tuning of the first two
    (with and without the teacher) at every bit width of the scale, and int8 models at 8 bits."""
    device = torch.device("cpu")  # int8 kernels and the timings are CPU ones
    results.run_provenance["environment"]["cifar_torch_threads"] = set_threads("resnet")
    data = cifar.subset(dataset, scale.cifar)
    teacher = None
    for seed in scale.cifar_seeds:
        for method in ("nokd", "kd", *FEATURE_METHODS):
            row_id = feature_row_id(method, seed)
            qat_ids = {} if method in FEATURE_METHODS else {b: quantized_row_id("CIFAR-10", method, b, seed)
                                                            for b in scale.bits}
            qat_ids = {bits: qat_id for bits, qat_id in qat_ids.items() if not results.has(qat_id)}
            if results.has(row_id) and not qat_ids:
                continue
            if budget.spent():
                return
            if teacher is None:
                teacher = cifar.load_or_train_teacher(profile, scale.cifar, data, dataset.source, results, device,
                                                      progress)
            row = replace(REDUCED_ROW, kd=method != "nokd")
            more = method_terms(method, teacher) if method in FEATURE_METHODS else None
            student, result = cifar.train_student(row, seed, scale.cifar, teacher, data, device, progress, more)
            result.update({"experiment": "features", "dataset": "CIFAR-10", "method": method,
                           "bits": FLOAT_BITS})
            if not results.has(row_id):
                report(progress, row_id, result)
                results.put(row_id, result)
            # the float student the QAT rows start from, trained again when resuming: record
            # whether it reproduced the stored one
            reproduced = result["accuracy"] == results.get(row_id)["accuracy"]
            for bits, qat_id in qat_ids.items():
                qat = run_cifar_qat(student, row, seed, scale, teacher, data, progress, bits)
                qat["float_student_reproduced"] = reproduced
                report(progress, qat_id, qat)
                results.put(qat_id, qat)


def run_cifar_qat(student: nn.Module, row: cifar.CifarRow, seed: int, scale: AlgorithmsScale, teacher: nn.Module,
                  data: tuple[Tensor, ...], progress: bool, bits: int = 8) -> dict[str, Any]:
    """Fine-tune a trained float student with ``bits``-bit QAT for ``scale.qat_epochs`` epochs
    (a tenth of the learning rate, float32); at 8 bits, also convert it to int8 and time it."""
    x_train, y_train, x_test, y_test = data
    keep = cifar.first_per_class(y_train, scale.cifar.reduced_per_class)
    example = cifar.plain()(x_train[:8])
    qat = prepare_qat(student, bits, example)
    config = replace(cifar.train_config(scale.cifar, scale.qat_epochs, seed, kd=row.kd, device=torch.device("cpu")),
                     lr=scale.cifar.lr / 10, warmup_epochs=0, mixed_precision=False)
    log = train(qat, x_train[keep], y_train[keep], config, batch_transform=cifar.augmenting(), progress=progress,
                teacher=teacher if row.kd else None)
    freeze(qat)

    def evaluate(model: nn.Module, images: Tensor, labels: Tensor) -> float:
        return cifar.evaluate(model, images, labels, scale.cifar.flip_test)

    fields: dict[str, Any] = {}
    if bits == 8:
        images = cifar.plain()(x_test[:256])
        fields = int8_fields(qat, student, images, y_test[:256], scale.timing_repeats, 256)
        fields["accuracy_int8"] = evaluate(to_int8(qat), x_test, y_test)
    return {"experiment": "quantized", "dataset": "CIFAR-10", "method": "kd" if row.kd else "nokd", "bits": bits,
            "seed": seed, "train_size": len(keep), "config": config.to_dict(), "qat": "fine-tuned from float",
            "accuracy": evaluate(qat, x_test, y_test), "train_wall_s": log.wall_s, **fields}


def report(progress: bool, row_id: str, row: dict[str, Any]) -> None:
    if progress:
        print(f"{row_id}: accuracy {row['accuracy']:.4f}, {row['train_wall_s']:.1f} s", flush=True)


def run_algorithms(profile: str = "quick", out: Path | str | None = None, parts: tuple[str, ...] = PARTS,
                   progress: bool = True, mnist: ImageDataset | None = None, cifar10: ImageDataset | None = None,
                   command: str | None = None, scale: AlgorithmsScale | None = None,
                   time_budget_s: float | None = None) -> dict[str, Any]:
    """Run (or resume) the experiments of chapter 8 named in ``parts`` (``"mnist-quantized"``,
    ``"mnist-adversarial"``, ``"cifar"``: the feature methods and QAT of the reduced-set
    students); returns the result data. ``scale`` replaces the profile's with one of your own;
    ``time_budget_s``: start no new row (a teacher counts as one) after that many seconds."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}: choose from {PARTS}")
    from kdlib.experiments import paper_cpu_estimate
    from kdlib.profile import check_paper_on_cpu

    budget = TimeBudget(time_budget_s)
    scale = scale if scale is not None else SCALES[check_profile(profile)]
    check_paper_on_cpu(profile, "cpu", "algorithms", paper_cpu_estimate("algorithms"))
    started = time.perf_counter()
    results = ResultFile(out, "algorithms", new_provenance(command, profile=profile, scale=asdict(scale),
                                                           parts=list(parts)))
    if "mnist-quantized" in parts or "mnist-adversarial" in parts:
        results.run_provenance["environment"]["torch_threads"] = set_threads("mlp")
        mnist = mnist if mnist is not None else load_mnist()
        results.use_data_source(mnist.source)
        data = prepare_inputs(mnist, None)
        teachers = Teachers(*data, mnist.source, results)
        runs = ((quantized_runs(scale) if "mnist-quantized" in parts else [])
                + (adversarial_runs(scale) if "mnist-adversarial" in parts else []))
        run_mnist_parts(runs, scale, data, teachers, results, progress, budget)
    if "cifar" in parts:
        cifar10 = cifar10 if cifar10 is not None else load_cifar10()
        results.use_data_source(cifar10.source, key="cifar_data_source")
        run_cifar_parts(scale, profile, cifar10, results, progress, budget)
    results.set("last_run_s", time.perf_counter() - started)
    return results.data


load_published = partial(experiments.load_published, "algorithms")
"""The committed full-profile result file of this experiment, parsed."""


# ------------------------------------------------------------------------------------------------
# Tables and figures for the chapter


def student_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One line per student row, with accuracy in percent."""
    rows = [row for row in data["rows"].values() if row.get("kind") != "teacher" and "experiment" in row]
    frame = pd.DataFrame(rows)
    frame["accuracy_pct"] = 100 * frame["accuracy"]
    return frame


def planned_frame(data: dict[str, Any], row_ids: list[str]) -> pd.DataFrame:
    """The rows ``row_ids`` (planned by a table) as a frame, accuracy in percent; a missing one
    raises :class:`kdlib.experiments.MissingRows` with the command that makes it."""
    command = run_command("algorithms", data)
    frame = pd.DataFrame(planned_rows(data, row_ids, command))
    frame["accuracy_pct"] = 100 * frame["accuracy"]
    return frame


def paired(frame: pd.DataFrame, treated: dict[str, Any], baseline: dict[str, Any]) -> PairedGap | float:
    """Paired gap (percentage points) of ``treated`` minus ``baseline`` over their common seeds;
    with a single common seed, just the difference (no interval can be computed)."""
    differences = seed_differences(frame, treated, baseline)
    if len(differences) < 2:
        return float(differences.sum())
    return gap_by_seed(frame, treated, baseline)


def gap_text(gap: PairedGap | float) -> str:
    """``+1.23 [+0.45, +2.01]``, or ``+1.23 (one seed)``."""
    return str(gap) if isinstance(gap, PairedGap) else f"{gap:+.2f} (one seed)"


def mean_sd(values: pd.Series) -> str:
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def quantized_rows(data: dict[str, Any], dataset: str = "MNIST") -> list[str]:
    """The planned row ids of the quantization sweep on ``dataset``: KD and no KD, float and
    every recorded bit width, every recorded seed."""
    scale = data["provenance"]["scale"]
    seeds = scale["mnist_seeds"] if dataset == "MNIST" else scale["cifar_seeds"]
    return [quantized_row_id(dataset, method, bits, seed) for seed in seeds
            for bits in (FLOAT_BITS, *scale["bits"]) for method in ("kd", "nokd")]


def quantization_table(data: dict[str, Any], dataset: str = "MNIST") -> pd.DataFrame:
    """Accuracy (mean and sd over seeds) of KD and no-KD students at each bit width, and the
    paired gain of KD at that width; the planned rows of the recorded scale, a missing one
    raises :class:`kdlib.experiments.MissingRows`."""
    widths = (FLOAT_BITS, *data["provenance"]["scale"]["bits"])
    return bits_table(planned_frame(data, quantized_rows(data, dataset)), widths)


def bits_table(frame: pd.DataFrame, widths: tuple[int, ...]) -> pd.DataFrame:
    """The table of :func:`quantization_table` from a frame of students (columns ``method``,
    ``"kd"`` or ``"nokd"``, ``bits``, ``seed`` and ``accuracy_pct``), one line per bit width of
    ``widths`` (:data:`FLOAT_BITS` for float students)."""
    lines = []
    for bits in widths:
        at = frame[frame.bits == bits]
        g = paired(at, {"method": "kd"}, {"method": "nokd"})
        lines.append({"bits": "float" if bits == FLOAT_BITS else f"{int(bits)}",
                      "no KD %": mean_sd(at[at.method == "nokd"].accuracy_pct),
                      "KD %": mean_sd(at[at.method == "kd"].accuracy_pct),
                      "KD gain (points)": gap_text(g), "seeds": g.n if isinstance(g, PairedGap) else 1,
                      "gain": g.mean if isinstance(g, PairedGap) else g,
                      "low": g.low if isinstance(g, PairedGap) else None,
                      "high": g.high if isinstance(g, PairedGap) else None})
    return pd.DataFrame(lines)


def int8_rows(data: dict[str, Any]) -> list[str]:
    """The planned row ids of the 8-bit QAT students (each converted to int8), MNIST then CIFAR-10."""
    scale = data["provenance"]["scale"]
    if 8 not in scale["bits"]:
        return []
    return [quantized_row_id(dataset, method, 8, seed) for dataset, seeds in
            (("MNIST", scale["mnist_seeds"]), ("CIFAR-10", scale["cifar_seeds"]))
            for seed in seeds for method in ("kd", "nokd")]


def int8_table(data: dict[str, Any]) -> pd.DataFrame:
    """The int8 models against their float twins: size, latency, throughput (means over rows)
    and accuracy of the integer model against the fake-quantized one; the planned 8-bit rows
    of the recorded scale (a missing one raises :class:`kdlib.experiments.MissingRows`)."""
    return int8_summary(planned_frame(data, int8_rows(data)))


def int8_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """The table of :func:`int8_table` from a frame of 8-bit QAT students with their int8 fields
    (:func:`kdlib.experiments.algorithms.int8_fields`), one line per ``dataset``; their
    ``accuracy_pct`` must be scored as ``accuracy_int8`` is (one view)."""
    lines = []
    for dataset, rows in frame.groupby("dataset", sort=False):
        int8, flt = pd.DataFrame(list(rows.int8)), pd.DataFrame(list(rows.float))
        lines.append({"dataset": dataset, "models": len(rows),
                      "size int8 / float": (int8.size_bytes / flt.size_bytes).mean(),
                      "latency speed-up": (flt.latency_s / int8.latency_s).mean(),
                      "throughput speed-up": (int8.throughput_per_s / flt.throughput_per_s).mean(),
                      "int8 acc %": 100 * rows.accuracy_int8.mean(),
                      "fake-quant acc %": rows.accuracy_pct.mean(),
                      "same prediction %": 100 * rows.int8_agreement_with_fake_quant.mean()})
    return pd.DataFrame(lines)


def method_rows(data: dict[str, Any], experiment: str, train_size: int | None = None) -> list[str]:
    """The planned row ids of ``experiment`` (``"adversarial"``: the MNIST comparison at
    ``train_size`` labelled images; ``"features"``: the reduced-set CIFAR-10 students)."""
    scale = data["provenance"]["scale"]
    if experiment == "adversarial":
        if train_size not in scale["adversarial_sizes"]:
            raise ValueError(f"train_size must be one of the recorded sizes {scale['adversarial_sizes']}, "
                             f"got {train_size!r}")
        return [adversarial_row_id(m, train_size, s) for s in scale["mnist_seeds"]
                for m in ("nokd", "kd", "adversarial")]
    if experiment == "features":
        return [feature_row_id(m, s) for s in scale["cifar_seeds"] for m in ("nokd", "kd", *FEATURE_METHODS)]
    raise ValueError(f"experiment must be 'adversarial' or 'features', got {experiment!r}")


def method_table(data: dict[str, Any], experiment: str, train_size: int | None = None) -> pd.DataFrame:
    """Mean and sd of each method's accuracy, and paired gaps against plain KD and labels only,
    over the planned rows of :func:`method_rows` (a missing one raises
    :class:`kdlib.experiments.MissingRows`)."""
    frame = planned_frame(data, method_rows(data, experiment, train_size))
    lines = []
    columns = ["method", "accuracy %", "seeds", "vs nokd (points)", "vs kd (points)"]
    for method in frame.method.unique():
        at = frame[frame.method == method].accuracy_pct
        line = {"method": method, "accuracy %": mean_sd(at), "seeds": len(at)}
        for base in ("nokd", "kd"):
            if method != base:
                line[f"vs {base} (points)"] = gap_text(paired(frame, {"method": method}, {"method": base}))
        lines.append(line)
    frame = pd.DataFrame(lines)
    return frame[[c for c in columns if c in frame]].fillna("")


REPDISTILLER_CIFAR100 = {"student alone": 72.50, "kd": 73.33, "fitnets": 73.50, "at": 73.44, "crd": 75.51,
                         "teacher": 79.42}
"""Tian et al.'s benchmark (RepDistiller's README, "Benchmark Results on CIFAR-100", column
resnet32x4 -> resnet8x4, the pair of the same kind closest to ours): test accuracy in %. There
FitNets, AT and CRD are each trained with the labels and *without* the KD term; here each is
added to KD. Quoted for scale, not as a claim about this course's numbers."""

METHOD_NAMES = {"nokd": "labels only", "kd": "KD", "fitnets": "KD + FitNets", "at": "KD + AT",
                "crd": "KD + CRD"}


def feature_table(data: dict[str, Any]) -> pd.DataFrame:
    """The reduced-set CIFAR-10 students, in the style of Tian et al.'s table: each method's
    accuracy (mean ± sd over seeds) and its paired gain over plain KD with the 95% interval. The
    rows are the planned ones (every method and seed of the recorded scale): a missing row
    raises :class:`kdlib.experiments.MissingRows`."""
    methods, seeds = ("nokd", "kd", *FEATURE_METHODS), data["provenance"]["scale"]["cifar_seeds"]
    return gains_over_kd(planned_frame(data, [feature_row_id(m, s) for m in methods for s in seeds]))


def gains_over_kd(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`feature_table` of a frame of students, one line each with ``method`` (a key of
    :data:`METHOD_NAMES`), ``seed`` and ``accuracy_pct``."""
    lines = []
    for method in METHOD_NAMES:
        accuracy = frame[frame.method == method].accuracy_pct
        line = {"method": METHOD_NAMES[method], "accuracy %": mean_sd(accuracy), "seeds": len(accuracy)}
        if method != "kd":
            gap = paired(frame, {"method": method}, {"method": "kd"})
            line["minus KD"] = f"{gap.mean if isinstance(gap, PairedGap) else gap:+.2f}"
            line["95% CI"] = (f"[{gap.low:+.2f}, {gap.high:+.2f}]" if isinstance(gap, PairedGap)
                              else "(one seed)")
        lines.append(line)
    return pd.DataFrame(lines).fillna("")


def literature_table() -> pd.DataFrame:
    """:data:`REPDISTILLER_CIFAR100` with each method's difference from KD, in points."""
    kd = REPDISTILLER_CIFAR100["kd"]
    names = {"kd": "KD", "fitnets": "FitNets", "at": "AT", "crd": "CRD"}
    return pd.DataFrame([{"method": names.get(m, m), "CIFAR-100 %": v,
                          "minus KD": "" if m in ("kd", "teacher") else f"{v - kd:+.2f}"}
                         for m, v in REPDISTILLER_CIFAR100.items()])


def adversarial_curves(data: dict[str, Any], train_size: int) -> pd.DataFrame:
    """Per epoch: mean test accuracy of each method and the discriminator's accuracy (seeds
    averaged), from the planned rows at ``train_size`` (a missing one raises)."""
    frame = planned_frame(data, method_rows(data, "adversarial", train_size))
    points = [{"method": row.method, "seed": row.seed, **point} for row in frame.itertuples() for point in row.history]
    return pd.DataFrame(points).groupby(["method", "epoch"]).mean(numeric_only=True).reset_index()


@book_style
def plot_quantization(data: dict[str, Any]):
    """MNIST test accuracy against bit width, KD and no KD, mean and sd over seeds."""
    import matplotlib.pyplot as plt

    frame = planned_frame(data, quantized_rows(data, "MNIST"))
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.8))
    order = sorted(frame.bits.unique())
    positions = {b: i for i, b in enumerate(order)}
    for method, label, marker in (("kd", "KD (teacher in float)", "o"), ("nokd", "no KD (labels only)", "s")):
        stats = frame[frame.method == method].groupby("bits").accuracy_pct.agg(["mean", "std"]).fillna(0)
        ax.errorbar([positions[b] for b in stats.index], stats["mean"], yerr=stats["std"], fmt=marker + "-",
                    capsize=3, label=label)
    ax.set_xticks(range(len(order)), ["float" if b == FLOAT_BITS else f"{int(b)} bits" for b in order])
    ax.set_xlabel("precision of the student's weights and activations")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Quantization-aware training of a 784-300-10 student")
    legend_below(fig)
    return fig


@book_style
def plot_adversarial(curves: pd.DataFrame):
    """Test accuracy per epoch of each method, and the discriminator's accuracy."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(COLUMN_INCHES, 5.6), sharex=True)
    names = {"nokd": "no KD", "kd": "KD", "adversarial": "KD + discriminator"}
    for (method, rows), style in zip(curves.groupby("method", sort=False), ("-", "--", ":")):
        top.plot(rows.epoch, 100 * rows.test_accuracy, style, label=names.get(method, method))
    top.set_ylabel("test accuracy (%)")
    top.set_title("Students")
    adv = curves[curves.method == "adversarial"]
    bottom.plot(adv.epoch, 100 * adv.discriminator_accuracy, color="black", label="discriminator")
    bottom.axhline(50, color="gray", ls="--", label="chance")
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("accuracy (%)")
    bottom.set_title("Can the discriminator tell student from teacher?")
    legend_below(fig, top, bottom, ncols=3)
    return fig


@book_style
def plot_fake_quantize(scale: float = 0.05, bits: tuple[int, ...] = (2, 4)):
    """The fake quantizer's staircase for a few bit widths, and its straight-through gradient."""
    import matplotlib.pyplot as plt

    from kdlib.quantize import fake_quantize

    x = torch.linspace(-0.6, 0.6, 1201, requires_grad=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(COLUMN_INCHES, 5.2), sharex=True)
    for b in bits:
        y = fake_quantize(x, b, scale)
        (grad,) = torch.autograd.grad(y.sum(), x)
        top.plot(x.detach(), y.detach(), label=f"{b} bits ({2**b} levels)")
        bottom.plot(x.detach(), grad)
    top.plot(x.detach(), x.detach(), color="gray", ls=":", label="no quantization")
    top.set_ylabel("quantized value")
    top.set_title(f"Rounding to a grid of step {scale:g}, clipped")
    bottom.set_xlabel("weight x")
    bottom.set_ylabel("gradient")
    bottom.set_title("Straight-through estimator")
    legend_below(fig, top, ncols=3)
    return fig
