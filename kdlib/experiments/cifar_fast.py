"""Table 2's question on a CPU-trained teacher: the fast recipe's network distilled into narrower
copies of itself.

Chapter 6 reproduces the report's Table 2 with ResNets, whose teacher this CPU cannot afford
(hours for its schedule; the committed rows were trained on a lent GPU). This experiment asks
the table's questions of the fast recipe (:mod:`kdlib.fastnet`), whose teacher trains on a
2-core CPU in under an hour:

* **the teacher** is made as chapter 10's is (:mod:`kdlib.experiments.modern_cifar`, and the
  same checkpoint when the cache holds it): the fast network (widths 64/256/256), seed 0, 20
  epochs on all 50,000 training images; the same split (5,000 validation images the students
  never see) and the teacher's logits on every view of the students' 45,000 training images;
* **the students** keep the recipe and change its one shape knob, the widths of its three conv
  groups (the report's students change ResNet depth and stride, which this network does not
  have): the "ideal" student (chapter 10's; the name only marks the row that plays the report's
  ideal student's part) and a smaller one, each trained with the KD loss and with the labels
  alone, a pair per seed: the same initial weights and the same first epoch's order (the
  augmentation draws differ, since a distilled student samples the teacher's views, and so do
  the later epochs' orders);
* **the large student** (widths 64/128/256, ``LARGE``), the same pair on the full set, in a file
  of its own (``cifar10-large``): it was added after the table's file was made, and its
  teacher is the one the checkpoint cache of the machine that ran it held (see
  :data:`FEATURE_EXPERIMENT`);
* **the reduced set**: the ideal student on 500 images of each class (the report's reduced set,
  drawn at random from the students' images), for as many optimiser steps as on the full set
  (the recipe's epoch counts scaled by the images' ratio), with and without the KD loss;
* **patient and consistent teaching** (chapter 9, Beyer et al. 2022): on the reduced set, a
  *fixed* teacher (its logits on the plain image, whatever view the student sees) beside the
  *consistent* one above (its logits on exactly the student's view) and the labels alone, at
  that schedule and at twice its steps (``CONSISTENCY``);
* **quantized distillation** (chapter 8): the reduced-set pair trained again in float, then
  fine-tuned with quantization-aware training at 8, 4 and 2 bits (``QAT``), the 8-bit models
  converted to int8 and timed;
* **feature-based distillation** (chapter 8): on the reduced set, FitNets' hint, attention
  transfer and CRD, each added to the KD loss, the teacher run on each batch for its feature
  maps; each term's weight chosen on the validation split first (``FEATURE_CANDIDATES``, one
  student per candidate at the selection seed), then three seeds at that weight (``FEATURES``).

The KD loss is the course's (temperature 4, weight 0.5 beside the labels' 0.5); every label term
keeps the recipe's label smoothing of 0.2, so only the distillation term differs within a pair.

    python -m kdlib.experiments cifar10-fast --profile full      # results/cifar10_fast_full.json
    python -m kdlib.experiments cifar10-features --profile full  # results/cifar10_features_full.json
    python -m kdlib.experiments cifar10-large --profile full     # results/cifar10_large_full.json

The quick profile uses chapter 10's quick teacher (a small network on 1,000 images), so that CI
runs the whole pipeline in under a minute.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from kdlib.bench import count_flops
from kdlib.data import ImageDataset, first_per_class, normalize
from kdlib.distributed import broadcast, run_rows
from kdlib.experiments import KD_TEMPERATURE, TimeBudget, planned_rows, run_command
from kdlib.experiments import modern_cifar
from kdlib.experiments.algorithms import FEATURE_METHODS, int8_fields, method_terms
from kdlib.experiments.modern import terms_for
from kdlib.fastnet import FastRecipe, centre_view, fast_accuracy, fast_cifar_net, train_fast
from kdlib.models import seeded
from kdlib.precision import use_bfloat16
from kdlib.profile import check_profile
from kdlib.quantize import check_bits, freeze, prepare_qat, to_int8
from kdlib.stats import PairedGap, mean_interval, paired_gap
from kdlib.terms import Term
from kdlib.train import accuracy

EXPERIMENT = "cifar10-fast"
FEATURE_EXPERIMENT = "cifar10-features"
"""Chapter 8's feature rows and their KD and labels-only pairs: a result file of their own, so
that they can be made with a teacher trained again elsewhere (a teacher's weights differ from
one CPU's kernels to another's, and a file holds the students of one teacher)."""
LARGE_EXPERIMENT = "cifar10-large"
"""Chapter 6's large student and its labels-only pair (:data:`LARGE`): a result file of its own,
for the same reason as :data:`FEATURE_EXPERIMENT`'s."""


TEACHINGS = ("consistent", "fixed")
"""How a KD row's teacher is read: ``"consistent"``, its logits on exactly the view the student
sees; ``"fixed"``, its logits on the plain image (the centre view, not mirrored) whatever view
the student sees (Beyer et al., 2022)."""


@dataclass(frozen=True)
class FastRow:
    """One row of the table: the student's widths (scaled by the profile), the loss, the data,
    how the teacher is read and the schedule's length."""

    name: str
    size: str  # "small", "ideal" or "large": a key of the scale's ``widths``
    kd: bool = True
    reduced: bool = False
    teaching: str = "consistent"  # one of TEACHINGS (KD rows only)
    patience: int = 1  # the schedule, in multiples of the row's usual number of steps
    feature: str | None = None  # a term on the teacher's features added to KD (FEATURE_METHODS)
    feature_weight: float | None = None  # a candidate weight of that term (selection rows only)
    bits: int | None = None  # quantization-aware fine-tuning of the trained row at these bits (QAT)

    def __post_init__(self) -> None:
        if self.teaching not in TEACHINGS:
            raise ValueError(f"teaching must be one of {TEACHINGS}, got {self.teaching!r}")
        if self.teaching == "fixed" and not self.kd:
            raise ValueError(f"row {self.name!r}: a labels-only row has no teacher, so teaching='fixed' "
                             "does not apply; leave it at 'consistent'")
        if self.patience < 1:
            raise ValueError(f"row {self.name!r}: patience must be a whole multiple >= 1, got {self.patience}")
        if self.feature is None and self.feature_weight is not None:
            raise ValueError(f"row {self.name!r}: feature_weight applies to a row with a feature term only")
        if self.feature is not None:
            if self.feature not in FEATURE_METHODS:
                raise ValueError(f"row {self.name!r}: feature must be one of {FEATURE_METHODS}, got {self.feature!r}")
            if self.feature_weight is not None and not self.feature_weight > 0:
                raise ValueError(f"row {self.name!r}: feature_weight must be > 0, got {self.feature_weight}")
            if not self.kd or self.teaching != "consistent":
                raise ValueError(f"row {self.name!r}: a feature term is added to KD with a consistent teacher (the "
                                 "teacher is run on the student's own view, for its feature maps); set kd=True "
                                 "and leave teaching at 'consistent'")

        if self.bits is not None:
            check_bits(self.bits)
            if self.feature is not None or self.patience != 1 or self.teaching != "consistent":
                raise ValueError(f"row {self.name!r}: QAT (bits) fine-tunes a labels-only or KD row with a "
                                 "consistent teacher at the usual schedule; leave feature, patience and "
                                 "teaching at their defaults")

    def row_id(self, seed: int) -> str:
        data = ("reduced" if self.reduced else "full") + (f"-x{self.patience}" if self.patience > 1 else "")
        loss = "labels" if not self.kd else "kd" if self.teaching == "consistent" else "kd-fixed"
        if self.feature is not None:
            loss += f"+{self.feature}" + (f"-w{self.feature_weight:g}" if self.feature_weight is not None else "")
        if self.bits is not None:
            loss += f"+qat{self.bits}"
        return f"{self.size}/{loss}/{data}/seed{seed}"


TABLE: tuple[FastRow, ...] = (
    FastRow("Ideal", "ideal"),
    FastRow("Ideal, labels", "ideal", kd=False),
    FastRow("Reduced set", "ideal", reduced=True),
    FastRow("Reduced set, labels", "ideal", kd=False, reduced=True),
    FastRow("Small", "small"),
    FastRow("Small, labels", "small", kd=False),
)
"""The rows, in the order they run: the report's claim (the ideal student with and without KD, on
the full and the reduced set) first, then the other sizes; each KD row is followed by its pair."""

CONSISTENCY: tuple[FastRow, ...] = (
    FastRow("Reduced set, fixed teacher", "ideal", reduced=True, teaching="fixed"),
    FastRow("Reduced set 2x, labels", "ideal", kd=False, reduced=True, patience=2),
    FastRow("Reduced set 2x", "ideal", reduced=True, patience=2),
    FastRow("Reduced set 2x, fixed teacher", "ideal", reduced=True, teaching="fixed", patience=2),
)
"""Chapter 9's patient and consistent teaching (Beyer et al., 2022) on the reduced set: beside
TABLE's "Reduced set" (a consistent teacher) and "Reduced set, labels", a fixed teacher at the
same schedule, then all three at twice its steps. Scored, as TABLE is, with the recipe's
test-time augmentation (declared before the run), with one view beside it."""

FEATURE_LABELS = {"fitnets": "FitNets", "at": "AT", "crd": "CRD"}

FEATURES: tuple[FastRow, ...] = tuple(
    FastRow(f"Reduced set, KD + {label}", "ideal", reduced=True, feature=method)
    for method, label in FEATURE_LABELS.items()
)
"""Chapter 8's feature-based distillation on the reduced set: FitNets' hint, attention transfer
and CRD, each added to the KD loss of TABLE's "Reduced set" row, with the settings of
:func:`kdlib.experiments.algorithms.method_terms` but the weight of the term chosen on the
validation split (:data:`FEATURE_CANDIDATES`). The teacher is run on each batch (its feature
maps are needed), on the views the KD row's student saw: a feature row and the KD row of a seed
share their initial weights, data order and views, so their difference is the term's (and the
rounding of the teacher's logits computed on another batch). Scored, as TABLE is, with
test-time augmentation (declared before the run), with one view beside it."""

FEATURE_CANDIDATES: dict[str, tuple[float, ...]] = {"fitnets": (1.0, 0.1), "at": (100.0, 10.0),
                                                     "crd": (0.08, 0.008)}
"""The weights each feature term is tried at, declared before the first full run. Chapter 8's
ResNet students use 1 (the hint), 1000 (AT, the authors') and 0.8 (CRD, RepDistiller's) with
their recipe (SGD at a learning rate of 0.05, batch 128; this docstring first said 0.2, which
is chapter 6's, corrected after the run); this recipe differs in learning rate (1.5), batch
(1,024), map sizes and loss. A probe on the reduced set (a small stand-in teacher, not kept in
the repository, not a result) saw AT at 1000 collapse to chance and CRD at 0.8 overflow within
six epochs, while the hint at 1 trained. So: the hint at its weight and a tenth of it; AT and CRD at
a tenth and a hundredth of theirs. Each candidate trains one student at the selection seed
(``base.selection_seeds[0]``); the weight with the best validation accuracy (one view) is the
one the final rows use (ties: the first listed). The test set chooses nothing."""

QAT_BITS = (8, 4, 2)
"""The bit widths of chapter 8's quantization-aware training (QAT) on the fast students, as in
its MNIST sweep."""

QAT: tuple[FastRow, ...] = tuple(
    replace(row, name=f"{row.name}, {bits}-bit QAT", bits=bits)
    for row in TABLE if row.reduced and row.size == "ideal" for bits in QAT_BITS
)
"""Chapter 8's quantized students on the fast teacher: TABLE's reduced-set pair (KD, the labels
alone), each trained again in float (the same seed gives the same student on the same machine;
``float_student_reproduced`` checks it against the stored row), then fine-tuned with QAT at each
of :data:`QAT_BITS` (:func:`kdlib.quantize.prepare_qat`) by :func:`qat_recipe`, with the loss its
float row was trained with (KD rows: the same teacher's logits per view). 8-bit models are also
converted to int8 and timed. Scored, as TABLE is, with test-time augmentation, one view beside
it. Declared before the first full run."""

LARGE: tuple[FastRow, ...] = (
    FastRow("Large", "large"),
    FastRow("Large, labels", "large", kd=False),
)
"""Chapter 6's third student, planned with TABLE and left out of its run for time: the large
student (widths 64/128/256 at full scale, 3.3 times the ideal student's FLOPs and 0.55 of the
teacher's) on the full set, with the KD loss and with the labels alone, a pair per seed as in
TABLE. Its rows are ``cifar10-large``'s, made later, with the teacher the running machine's
checkpoint cache held for the recipe (not necessarily TABLE's network). Scored, as TABLE is,
with test-time augmentation, one view beside it. Declared before its run."""

PLANNED: tuple[FastRow, ...] = TABLE + CONSISTENCY
"""Every row a run of ``cifar10-fast`` makes, in order."""

FEATURE_PLANNED: tuple[FastRow, ...] = tuple(row for row in TABLE if row.reduced) + FEATURES + QAT
"""Every row a run of ``cifar10-features`` makes: TABLE's reduced-set pair (KD, the labels
alone), the selection students, then FEATURES, then QAT."""

ROWS = {EXPERIMENT: PLANNED, FEATURE_EXPERIMENT: FEATURE_PLANNED, LARGE_EXPERIMENT: LARGE}


@dataclass(frozen=True)
class FastScale:
    """How big a run is in a profile: chapter 10's teacher, split and student recipe
    (``base``), the students' widths, the reduced set's size and the seeds of every row."""

    base: modern_cifar.CifarScale
    widths: dict[str, tuple[int, int, int]]
    reduced_per_class: int
    seeds: tuple[int, ...]

    def reduced_indices(self, labels: Tensor) -> Tensor:
        """The reduced set among the students' images: the first ``reduced_per_class`` of each
        class, in the split's random order, so a random sample of each class."""
        return first_per_class(labels, self.reduced_per_class)

    def recipe(self, row: FastRow, images: int, full_images: int) -> FastRecipe:
        """The student recipe of ``row`` trained on ``images`` images: chapter 10's, at the row's
        widths. On the reduced set every epoch count is multiplied by the full set's batches per
        epoch (``full_images``) over the reduced set's, rounded, so that both take about the same
        number of optimiser steps; ``row.patience`` multiplies them again (the same schedule,
        stretched)."""
        recipe = replace(self.base.student_recipe(), widths=self.widths[row.size])
        factor = row.patience
        if row.reduced:
            batches = -(-full_images // recipe.batch_size), -(-images // recipe.batch_size)
            factor *= max(1, round(batches[0] / batches[1]))
        if factor == 1:
            return recipe
        return replace(recipe, epochs=recipe.epochs * factor,
                       whiten_bias_epochs=recipe.whiten_bias_epochs * factor,
                       lookahead_start_epochs=recipe.lookahead_start_epochs * factor)


SCALES = {
    "quick": FastScale(base=modern_cifar.SCALES["quick"],
                       widths={"small": (8, 16, 16), "ideal": (16, 32, 32), "large": (32, 64, 64)},
                       reduced_per_class=50, seeds=(0, 1)),
    "full": FastScale(base=modern_cifar.SCALES["full"],
                      # "large": planned with TABLE, made by cifar10-large (LARGE)
                      widths={"small": (16, 32, 64), "ideal": (32, 64, 128), "large": (64, 128, 256)},
                      reduced_per_class=500, seeds=(0, 1, 2)),
}
SCALES["paper"] = SCALES["full"]


@dataclass(frozen=True)
class Run:
    row: FastRow
    seed: int
    weight: float | None = None  # a final feature row's chosen weight (not part of its id)

    def row_id(self) -> str:
        return self.row.row_id(self.seed)


def selection_rows() -> tuple[FastRow, ...]:
    """One row per feature method and candidate weight (:data:`FEATURE_CANDIDATES`)."""
    return tuple(replace(row, name=f"{row.name}, weight {weight:g}", feature_weight=weight)
                 for row in FEATURES for weight in FEATURE_CANDIDATES[row.feature])


def selection_runs(scale: FastScale) -> list[Run]:
    return [Run(row, scale.base.selection_seeds[0]) for row in selection_rows()]


def chosen_weights(rows: dict[str, dict[str, Any]], scale: FastScale) -> dict[str, float]:
    """Each feature method's weight: the candidate whose selection student has the best
    validation accuracy (ties: the first listed). Raises :class:`KeyError` for a method whose
    candidates have not all run."""
    chosen = {}
    for method in FEATURE_METHODS:
        runs = [run for run in selection_runs(scale) if run.row.feature == method]
        scores = [rows[run.row_id()]["validation_accuracy"] for run in runs]
        chosen[method] = runs[scores.index(max(scores))].row.feature_weight
    return chosen


QAT_BATCHNORM_EPS = 1e-5
"""The batch norms' epsilon in a QAT copy (PyTorch's default), in place of the fast network's
1e-12 (airbench's), which leaves a channel whose variance is zero (with 2-bit inputs, a
channel can be constant over a batch) divided by 1e-6. The first full run's first 2-bit
student reached non-finite weights in its first epoch; a probe with 1e-5 (one student, labels
only, not kept) trained to chance without them. Set after that run; every QAT row was then
trained again with it. It did not prevent every such failure (two 2-bit students, both at seed
2, diverged with it too), so the cause is not shown to be the epsilon; a row whose weights
become non-finite is recorded as diverged (:func:`run_qat_student`)."""


def qat_copy(student: nn.Module) -> nn.Module:
    """A copy of a trained fast student for QAT: every batch norm's epsilon set to
    :data:`QAT_BATCHNORM_EPS`. It changes the float network little: on one trained student
    (labels only, seed 0; checked once, not kept), the smallest running variance was 0.016, and
    one test image in 10,000 changed its top class."""
    student = copy.deepcopy(student).float()
    for module in student.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = QAT_BATCHNORM_EPS
    return student


def qat_recipe(recipe: FastRecipe) -> FastRecipe:
    """The QAT fine-tuning of a student trained with ``recipe``: a tenth of its
    epochs (at least one) and a tenth of its peak learning rate, its schedule's
    shape (warm-up, then linear decay) over those steps, no lookahead (it would
    average the quantizers' ranges too), the rest unchanged (the whitening bias,
    frozen during float training, stays frozen). Chapter 8's ResNet
    students were fine-tuned in the same spirit: 3 epochs after 20, at a tenth of
    their learning rate, without warm-up. Declared before the first full run."""
    epochs = max(1, round(recipe.epochs / 10))
    return replace(recipe, epochs=epochs, lr=recipe.lr / 10,
                   lookahead_start_epochs=epochs,
                   whiten_bias_epochs=0)


def planned_runs(scale: FastScale, rows: tuple[FastRow, ...] = PLANNED,
                 weights: dict[str, float] | None = None) -> list[Run]:
    """Every run of ``rows`` at every seed, the selection runs first when ``rows`` has feature
    rows; the final feature rows only when their ``weights`` (:func:`chosen_weights`) are given;
    QAT rows last, seed by seed and row by row within a seed, so that the bit widths of one float
    student follow each other (it is trained once for them)."""
    features = [row for row in rows if row.feature is not None]
    qat = [Run(row, seed) for seed in scale.seeds for row in rows if row.bits is not None]
    runs = [Run(row, seed) for row in rows if row.feature is None and row.bits is None for seed in scale.seeds]
    runs += [run for run in selection_runs(scale) if any(run.row.feature == f.feature for f in features)]
    if weights is not None:
        runs += [Run(row, seed, weights[row.feature]) for row in features for seed in scale.seeds]
    return runs + qat


def fixed_logits(soft: Tensor, translate: int) -> Tensor:
    """A fixed teacher from the logits per view ``soft`` ``(views, N, classes)``: every view reads
    the logits of the plain image (the centre of the grid of :func:`kdlib.fastnet.apply_views`,
    not mirrored), so the student sees an augmented image and the teacher's output on the
    un-augmented one. A view of ``soft``: no copy."""
    return soft[centre_view(translate)].expand_as(soft)


def view_spread(soft: Tensor, translate: int, temperature: float = KD_TEMPERATURE) -> dict[str, float]:
    """How far a fixed teacher is from a consistent one on the images of ``soft`` ``(views, N,
    classes)``: over every image and every view but the centre, the share whose top class is the
    centre view's, and the mean KL(p_view || p_centre) of the soft targets at ``temperature``
    (p_centre is what a fixed teacher puts in place of p_view)."""
    centre = centre_view(translate)
    others = torch.cat([soft[:centre], soft[centre + 1:]])
    plain = soft[centre].expand_as(others)
    log_views = torch.log_softmax(others / temperature, -1)
    kl = (log_views.exp() * (log_views - torch.log_softmax(plain / temperature, -1))).sum(-1)
    return {"top1_agreement": (others.argmax(-1) == plain.argmax(-1)).float().mean().item(),
            "kl_to_centre": kl.mean().item(), "temperature": temperature, "views": len(soft)}


def flops_per_image(widths: tuple[int, int, int], classes: int = 10) -> int:
    """FLOPs (two per multiply-add) of one 32 x 32 image's forward pass through the fast network
    at ``widths`` (:func:`kdlib.bench.count_flops`)."""
    model = fast_cifar_net(FastRecipe(widths=widths), classes).eval()
    return count_flops(model, torch.zeros(1, 3, 32, 32))


def feature_terms(method: str, weight: float, recipe: FastRecipe, teacher: nn.Module, labels: Tensor,
                  seed: int, classes: int = 10) -> list[Term]:
    """The term of ``method`` at ``weight`` added to KD
    (:func:`kdlib.experiments.algorithms.method_terms`), sized for the student of ``recipe`` and
    made from ``seed`` (its regressor or embeddings), so that a row is the same on every run.
    CRD draws its negatives from a generator of its own, seeded 0 for every student (as in
    chapter 8's ResNet rows)."""
    shapes = fast_cifar_net(recipe, classes)  # read for its stages' shapes only
    return seeded(lambda: method_terms(method, teacher, weight)(shapes, labels), seed)


def training_set(row: FastRow, scale: FastScale, data: modern_cifar.CifarSplit,
                 soft: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The images, labels and teacher's logits per view that ``row`` trains on: the students'
    split, or its reduced set."""
    if not row.reduced:
        return data.x_train, data.y_train, soft
    keep = scale.reduced_indices(data.y_train)
    return data.x_train[keep], data.y_train[keep], soft[:, keep]


def loss_terms(kd: bool, recipe: FastRecipe, images: int) -> tuple[int, list[Term]]:
    """The optimiser steps of ``recipe`` on ``images`` images, and the loss: the KD loss of the
    course (temperature :data:`KD_TEMPERATURE`) or the labels alone, with the recipe's label
    smoothing."""
    steps = recipe.epochs * -(-images // recipe.batch_size)
    return steps, terms_for("kd" if kd else "labels", {"temperature": KD_TEMPERATURE}, steps,
                            label_smoothing=recipe.label_smoothing)


def run_student(run: Run, scale: FastScale, data: modern_cifar.CifarSplit, soft: Tensor,
                teacher: nn.Module | None = None, trained: list[nn.Module] | None = None) -> dict[str, Any]:
    """Train one student and score it: test accuracy with one view and with the recipe's
    test-time augmentation, validation accuracy, training time. A row with a feature term needs
    the ``teacher`` network, run on each batch. The trained network is appended to ``trained``,
    when given."""
    if run.row.bits is not None:
        raise ValueError(f"row {run.row.name!r} is a QAT row: run it with run_qat_student")
    row, dataset = run.row, data.dataset
    images, labels, logits = training_set(row, scale, data, soft)
    recipe = scale.recipe(row, len(images), len(data.x_train))
    steps, terms = loss_terms(row.kd, recipe, len(images))
    if row.kd and row.teaching == "fixed":
        logits = fixed_logits(logits, recipe.translate)
    live = row.feature is not None
    if live:
        weight = row.feature_weight if row.feature_weight is not None else run.weight
        if teacher is None or weight is None:
            raise ValueError(f"row {row.name!r} reads the teacher's feature maps: pass the teacher network, "
                             "and the term's weight (chosen_weights) for a final row")
        terms += feature_terms(row.feature, weight, recipe, teacher, labels, run.seed, len(dataset.classes))
    built: list[nn.Module] = []
    try:
        student, log = train_fast(dataset, recipe, seed=run.seed, train_images=images, train_labels=labels,
                                  terms=terms, teacher_logits=logits if row.kd and not live else None,
                                  teacher=teacher if live else None, on_model=built.append)
        outcome = {"train_accuracy": log.train_accuracy, "train_wall_s": log.wall_s}
    except FloatingPointError as error:  # a weight that diverges is a result: the network is scored as it is
        if not live:
            raise
        student, outcome = built[0].eval(), {"diverged": str(error)}
    if trained is not None:
        trained.append(student)
    x_test = modern_cifar.test_inputs(dataset)
    x_val = normalize(data.x_val, dataset.mean, dataset.std).contiguous(memory_format=torch.channels_last)
    with torch.autocast(x_test.device.type, dtype=torch.bfloat16, enabled=use_bfloat16(x_test.device)):
        one_view = accuracy(student, x_test, dataset.test_labels)
        validation = accuracy(student, x_val, data.y_val)
    return {"kind": "student", **asdict(row), "seed": run.seed, "widths": list(recipe.widths),
            "train_images": len(images), "steps": steps, "recipe": recipe.to_dict(),
            "terms": [repr(t) for t in terms], "accuracy": one_view,
            "accuracy_tta": fast_accuracy(student, dataset, recipe) / 100, "validation_accuracy": validation,
            **outcome, **({"feature_weight": weight} if live else {}),
            "flops_per_image": flops_per_image(recipe.widths, len(dataset.classes))}


def run_qat_student(run: Run, scale: FastScale, data: modern_cifar.CifarSplit, soft: Tensor,
                    floats: dict[str, tuple[dict[str, Any], nn.Module]],
                    stored: dict[str, dict[str, Any]], timing_repeats: int = 20) -> dict[str, Any]:
    """Fine-tune one QAT row (:data:`QAT`) and score it. Its float student (the row without
    ``bits``) is trained again, once for all bit widths: ``floats`` holds the last one, by row
    id; ``stored`` holds the rows already in the file, whose float row the new training is
    checked against (``float_student_reproduced``: the same test accuracy, one view). QAT runs in
    float32, and the fake-quantized model is scored in float32 (with one view and with
    test-time augmentation, as its float row, which was scored in bfloat16 where the CPU has
    it). An 8-bit model is also converted to int8 (:func:`kdlib.quantize.to_int8`), scored
    with test-time augmentation, and timed against its float twin (one thread). A student
    whose weights become non-finite during QAT is a result, not a failure of the run: its row
    records ``diverged`` and no accuracy fields (a result file refuses a row whose accuracy is
    not a number)."""
    row, dataset = run.row, data.dataset
    base = Run(replace(row, bits=None), run.seed)
    if base.row_id() not in floats:
        floats.clear()  # one float student held at a time
        held: list[nn.Module] = []
        floats[base.row_id()] = (run_student(base, scale, data, soft, trained=held), held[0])
    float_row, student = floats[base.row_id()]
    images, labels, logits = training_set(row, scale, data, soft)
    recipe = qat_recipe(scale.recipe(base.row, len(images), len(data.x_train)))
    steps, terms = loss_terms(row.kd, recipe, len(images))
    x_test = modern_cifar.test_inputs(dataset).contiguous()
    qat = prepare_qat(qat_copy(student), row.bits, x_test[:8])
    previous = stored.get(base.row_id())
    common = {"kind": "student", **asdict(row), "seed": run.seed, "widths": list(recipe.widths),
              "train_images": len(images), "steps": steps, "recipe": recipe.to_dict(),
              "terms": [repr(t) for t in terms], "qat": "fine-tuned from float",
              "batchnorm_eps": QAT_BATCHNORM_EPS,
              "float_accuracy": float_row["accuracy"], "float_accuracy_tta": float_row["accuracy_tta"],
              "float_student_reproduced": None if previous is None else previous["accuracy"] == float_row["accuracy"],
              "float_train_wall_s": float_row["train_wall_s"], "flops_per_image": float_row["flops_per_image"]}
    try:
        qat, log = train_fast(dataset, recipe, seed=run.seed, train_images=images, train_labels=labels,
                              terms=terms, teacher_logits=logits if row.kd else None, mixed_precision=False,
                              start=qat)
    except (FloatingPointError, RuntimeError) as error:
        finite = all(torch.isfinite(p).all() for p in qat.parameters())  # not the observers' ±inf at start
        if finite:
            raise
        # non-finite weights are a result: recorded, with no accuracy (there is none to score)
        return {**common, "diverged": f"non-finite weights ({type(error).__name__}: {error})"}
    freeze(qat)
    x_val = normalize(data.x_val, dataset.mean, dataset.std).contiguous()
    fields: dict[str, Any] = {}
    if row.bits == 8:
        fields = int8_fields(qat, student, x_test, dataset.test_labels, timing_repeats, 256)
        fields["accuracy_int8_tta"] = fast_accuracy(to_int8(qat), dataset, recipe, mixed_precision=False) / 100
    return {**common, "accuracy": accuracy(qat, x_test, dataset.test_labels),
            "accuracy_tta": fast_accuracy(qat, dataset, recipe, mixed_precision=False) / 100,
            "validation_accuracy": accuracy(qat, x_val, data.y_val),
            "train_accuracy": log.train_accuracy, "train_wall_s": log.wall_s, **fields}


def run_cifar_fast(profile: str = "quick", out: Path | str | None = None, progress: bool = True,
                   dataset: ImageDataset | None = None, command: str | None = None,
                   time_budget_s: float | None = None, experiment: str = EXPERIMENT) -> dict[str, Any]:
    """Run (or resume) the table at ``profile`` scale: the teacher and its logits per view
    (cached, shared with chapter 10), then every row at every seed; returns the result data."""
    scale = SCALES[check_profile(profile)]
    budget = TimeBudget(time_budget_s)
    rows = ROWS[experiment]
    results, data, soft, where = modern_cifar.start_run(out, experiment, command, profile, scale, scale.base,
                                                        dataset)
    if where.is_main and not results.has("teacher-flops"):
        results.put("teacher-flops", {"kind": "cost", "flops_per_image": flops_per_image(
            scale.base.teacher_widths, len(data.dataset.classes))})
    if where.is_main and not results.has("teacher-views"):  # on the reduced set's images
        keep = scale.reduced_indices(data.y_train)
        results.put("teacher-views", {"kind": "views", "images": len(keep),
                                      **view_spread(soft[:, keep], scale.base.translate)})

    def report(i: int, n: int, row_id: str, row: dict[str, Any]) -> None:
        if progress and row.get("accuracy") is None:
            print(f"{i}/{n} {row_id}: {row.get('diverged', 'not scored')}", flush=True)
        elif progress:
            print(f"{i}/{n} {row_id}: test {row['accuracy']:.4f} (TTA {row['accuracy_tta']:.4f}), "
                  f"{row.get('train_wall_s', float('nan')):.0f} s", flush=True)

    teacher: list[nn.Module] = []
    floats: dict[str, tuple[dict[str, Any], nn.Module]] = {}

    def train_one(run: Run) -> dict[str, Any]:
        if run.row.bits is not None:
            return run_qat_student(run, scale, data, soft, floats, results.data["rows"])
        if run.row.feature is not None and not teacher:  # from the cache teacher_views has filled
            teacher.append(modern_cifar.make_teacher(data, scale.base)[0].eval())
        return run_student(run, scale, data, soft, teacher[0] if teacher else None)

    def missing(weights: dict[str, float] | None) -> list[Run]:
        return broadcast([r for r in planned_runs(scale, rows, weights) if not results.has(r.row_id())]
                         if where.is_main else [], where)

    run_rows(missing(None), train_one, results.put, budget.spent, where, report)  # selection rows first
    if any(row.feature is not None for row in rows) and not budget.spent():
        weights = broadcast(chosen_weights(results.data["rows"], scale) if where.is_main else None, where)
        run_rows(missing(weights), train_one, results.put, budget.spent, where, report)
    results.save()
    return results.data


# ------------------------------------------------------------------------------------------------
# Tables for the chapter


def load_published() -> dict[str, Any]:
    """The committed full-profile result file, ``results/cifar10_fast_full.json``."""
    from kdlib.experiments import load_published as load

    return load(EXPERIMENT)


def load_large() -> dict[str, Any]:
    """The committed full-profile result file of chapter 6's large student,
    ``results/cifar10_large_full.json``."""
    from kdlib.experiments import load_published as load

    return load(LARGE_EXPERIMENT)


def load_features() -> dict[str, Any]:
    """The committed full-profile result file of chapter 8's feature rows,
    ``results/cifar10_features_full.json``."""
    from kdlib.experiments import load_published as load

    return load(FEATURE_EXPERIMENT)


def seeds_of(data: dict[str, Any]) -> tuple[int, ...]:
    return tuple(data["provenance"]["scale"]["seeds"])


def row_values(data: dict[str, Any], row: FastRow, field: str = "accuracy") -> list[float]:
    """``field`` of ``row``'s runs, by seed (every planned seed must be there)."""
    ids = [row.row_id(seed) for seed in seeds_of(data)]
    return [r[field] for r in planned_rows(data, ids, run_command(data["experiment"], data))]


def summary_table(data: dict[str, Any], field: str = "accuracy",
                  rows: tuple[FastRow, ...] = TABLE) -> pd.DataFrame:
    """One line per row of ``rows``: widths, mean test accuracy (%) with its 95% interval over
    seeds, the teacher's FLOPs over the student's, mean training time (s) and the number of
    seeds."""
    teacher = data["rows"]["teacher-flops"]["flops_per_image"]
    lines = []
    for row in rows:
        values = [100 * v for v in row_values(data, row, field)]
        first = data["rows"][row.row_id(seeds_of(data)[0])]
        interval = mean_interval(values)
        lines.append({"experiment": row.name, "widths": "/".join(map(str, first["widths"])),
                      "accuracy": interval.mean, "low": interval.low, "high": interval.high,
                      "FLOP ratio": teacher / first["flops_per_image"],
                      "train s": sum(row_values(data, row, "train_wall_s")) / len(values), "seeds": len(values)})
    return pd.DataFrame(lines).set_index("experiment")


def kd_gaps(data: dict[str, Any], field: str = "accuracy",
            rows: tuple[FastRow, ...] = TABLE) -> dict[str, PairedGap]:
    """KD minus labels only, in points, paired by seed, for every KD row of ``rows`` (by its
    name). ``rows`` holds plain pairs, as TABLE and LARGE do: each KD row's pair is the same row
    without KD (a fixed teacher's or a feature row has none)."""
    gaps = {}
    for row in rows:
        if row.kd:
            pair = replace(row, kd=False)
            gaps[row.name] = paired_gap([100 * v for v in row_values(data, row, field)],
                                        [100 * v for v in row_values(data, pair, field)])
    return gaps


def per_seed_gains(data: dict[str, Any], name: str, field: str = "accuracy",
                   rows: tuple[FastRow, ...] = TABLE) -> list[float]:
    """KD minus labels only (points) of the KD row ``name`` of ``rows``, seed by seed."""
    row = next(r for r in rows if r.name == name and r.kd)
    with_kd, without = row_values(data, row, field), row_values(data, replace(row, kd=False), field)
    return [100 * (a - b) for a, b in zip(with_kd, without)]


def gain_difference(data: dict[str, Any], field: str = "accuracy") -> PairedGap:
    """The report's claim as one number: the ideal student's KD gain on the reduced set minus its
    gain on the full set (points), paired by seed."""
    return paired_gap(per_seed_gains(data, "Reduced set", field), per_seed_gains(data, "Ideal", field))


def consistency_frame(data: dict[str, Any], field: str = "accuracy_tta") -> pd.DataFrame:
    """Chapter 9's consistency students (the ideal student on the reduced set: TABLE's two rows
    there and CONSISTENCY's), one line each, in the form of
    :func:`kdlib.experiments.anchors.consistency_frame`: ``teaching`` (``"nokd"`` for labels
    only, ``"fixed"`` or ``"consistent"``), ``patience``, ``seed``, ``accuracy``, a fraction
    read from ``field`` (the declared scoring, test-time augmentation, by default), the
    training time ``train_s``, the optimiser ``steps`` and, from the row's recipe, its
    ``epochs``, the epochs its whitening layer's bias trains (``bias_epochs``) and the epoch
    lookahead starts at (``lookahead_from``)."""
    lines = []
    for row in TABLE + CONSISTENCY:
        if row.reduced and row.size == "ideal":
            teaching = row.teaching if row.kd else "nokd"
            columns = [row_values(data, row, name) for name in (field, "train_wall_s", "steps", "recipe")]
            for seed, value, train_s, steps, recipe in zip(seeds_of(data), *columns):
                lines.append({"part": "consistency", "teaching": teaching, "patience": row.patience,
                              "seed": seed, "accuracy": value, "train_s": train_s, "steps": steps,
                              "epochs": recipe["epochs"], "bias_epochs": recipe["whiten_bias_epochs"],
                              "lookahead_from": recipe["lookahead_start_epochs"]})
    return pd.DataFrame(lines)


def feature_frame(data: dict[str, Any], field: str = "accuracy_tta") -> pd.DataFrame:
    """Chapter 8's feature students on the fast teacher: TABLE's reduced-set pair (KD and the
    labels alone) and FEATURES' rows, at every seed, one line each in the form of
    :func:`kdlib.experiments.algorithms.student_frame`: ``method`` (``"nokd"``, ``"kd"`` or a
    feature method), ``seed``, ``accuracy_pct`` (read from ``field``: test-time augmentation,
    the declared scoring, by default), ``validation_pct``, the term's ``weight`` and
    ``train_s``. A missing row raises :class:`kdlib.experiments.MissingRows`."""
    reduced = [row for row in TABLE if row.reduced and row.size == "ideal"]
    lines = []
    for row in reduced + list(FEATURES):
        method = row.feature or ("kd" if row.kd else "nokd")
        columns = [row_values(data, row, name) for name in (field, "validation_accuracy")]
        ids = [row.row_id(seed) for seed in seeds_of(data)]
        for seed, row_id, value, validation in zip(seeds_of(data), ids, *columns):
            stored = data["rows"][row_id]
            lines.append({"method": method, "seed": seed, "accuracy_pct": 100 * value,
                          "validation_pct": 100 * validation, "weight": stored.get("feature_weight"),
                          "train_s": stored.get("train_wall_s")})
    return pd.DataFrame(lines)


def qat_frame(data: dict[str, Any], field: str = "accuracy_tta") -> pd.DataFrame:
    """Chapter 8's quantized students on the fast teacher, one line each in the form of
    :func:`kdlib.experiments.algorithms.student_frame`: TABLE's reduced-set pair as the float
    students (``bits`` :data:`kdlib.experiments.algorithms.FLOAT_BITS`) and the QAT rows
    (:data:`QAT`), with ``dataset``, ``method`` (``"kd"`` or ``"nokd"``), ``bits``, ``seed``,
    ``accuracy`` and ``accuracy_pct`` (read from ``field``: test-time augmentation, the declared
    scoring, by default) and, for QAT rows, the stored fields (``float_student_reproduced``; at 8
    bits the int8 fields, whose accuracies are one view's), ``diverged`` (non-finite weights:
    accuracy NaN). A missing row raises :class:`kdlib.experiments.MissingRows`."""
    from kdlib.experiments.algorithms import FLOAT_BITS

    reduced = [row for row in TABLE if row.reduced and row.size == "ideal"]
    lines = []
    for row in reduced + list(QAT):
        ids = [row.row_id(seed) for seed in seeds_of(data)]
        for seed, stored in zip(seeds_of(data), planned_rows(data, ids, run_command(data["experiment"], data))):
            value = float("nan") if stored.get(field) is None else stored[field]
            lines.append({**stored, "dataset": "CIFAR-10", "method": "kd" if row.kd else "nokd",
                          "bits": FLOAT_BITS if row.bits is None else row.bits, "seed": seed,
                          "accuracy": value, "accuracy_pct": 100 * value, "scoring": field,
                          "diverged": "diverged" in stored})
    return pd.DataFrame(lines)


def qat_table(data: dict[str, Any], field: str = "accuracy_tta") -> pd.DataFrame:
    """:func:`kdlib.experiments.algorithms.quantization_table` for the fast students
    (:func:`qat_frame`): per bit width, both students' mean accuracy and KD's paired gain; a
    width at which a student diverged is left out (:func:`qat_outcomes` counts them)."""
    from kdlib.experiments.algorithms import FLOAT_BITS, bits_table

    frame = qat_frame(data, field)
    widths = [bits for bits in (FLOAT_BITS, *QAT_BITS) if not frame[frame.bits == bits].diverged.any()]
    return bits_table(frame, tuple(widths))


def qat_outcomes(data: dict[str, Any], field: str = "accuracy_tta") -> pd.DataFrame:
    """Per QAT bit width: how many students were scored, how many diverged (non-finite
    weights), and the lowest and highest accuracy (%) of those scored."""
    frame = qat_frame(data, field)
    lines = []
    for bits in QAT_BITS:
        at = frame[frame.bits == bits]
        scored = at[~at.diverged].accuracy_pct
        lines.append({"bits": bits, "students": len(at), "scored": len(scored),
                      "diverged": int(at.diverged.sum()), "lowest %": scored.min(), "highest %": scored.max()})
    return pd.DataFrame(lines)


def selection_table(data: dict[str, Any]) -> pd.DataFrame:
    """The weights tried for each feature term (:data:`FEATURE_CANDIDATES`): one line per
    candidate with its selection student's validation accuracy (%, one view), whether its loss
    became non-finite (training stopped; the network is scored as it was), and which weight was
    chosen."""
    scale = SCALES[data["provenance"]["profile"]]
    runs = selection_runs(scale)
    stored = planned_rows(data, [run.row_id() for run in runs], run_command(data["experiment"], data))
    chosen = chosen_weights({run.row_id(): row for run, row in zip(runs, stored)}, scale)
    return pd.DataFrame([{"term": FEATURE_LABELS[run.row.feature], "weight": f"{run.row.feature_weight:g}",
                          "validation %": 100 * row["validation_accuracy"],
                          "non-finite loss": "yes" if "diverged" in row else "no",
                          "chosen": "yes" if chosen[run.row.feature] == run.row.feature_weight else ""}
                         for run, row in zip(runs, stored)])


__all__ = ["CONSISTENCY", "EXPERIMENT", "FEATURES", "FEATURE_CANDIDATES", "FEATURE_EXPERIMENT", "FastRow",
           "FastScale", "LARGE", "LARGE_EXPERIMENT", "PLANNED", "QAT", "QAT_BITS", "SCALES", "TABLE",
           "chosen_weights", "consistency_frame", "feature_frame", "fixed_logits", "gain_difference", "kd_gaps",
           "load_features", "load_large", "load_published", "per_seed_gains", "planned_runs", "qat_frame",
           "qat_outcomes", "qat_recipe", "qat_table", "row_values", "run_cifar_fast", "run_qat_student",
           "selection_table", "summary_table"]
