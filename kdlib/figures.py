"""Plots the chapters share, so that notebook cells stay short, and the book's figure style.

Every figure is one text column wide (``COLUMN_INCHES``) and drawn in ``STYLE`` by the
``book_style`` decorator, so that its text stays legible when a phone shows it about 360 px
wide. ``layout_problems`` says what would not be: text too small, texts that overlap, a legend
over the data. The tests run it on every figure the book shows.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Callable
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from kdlib.data import ImageDataset

COLUMN_INCHES = 6.0
"""Width of a book figure in inches: 600 px at the style's 100 dpi, the width of the text column."""

STYLE = {
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 11.5,
    "axes.labelsize": 11,
    "xtick.labelsize": 10.5,
    "ytick.labelsize": 10.5,
    "legend.fontsize": 10,
    "legend.framealpha": 0.9,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
"""Matplotlib settings of the book's figures (fonts sized for a one-column figure)."""


def book_style(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorator: make the figure that ``plot`` returns in ``STYLE``.

    The figure is drawn once inside the style, so that tick labels (which matplotlib creates
    only when it first draws) get the style's sizes too.
    """

    @functools.wraps(plot)
    def styled(*args, **kwargs) -> Figure:
        with plt.rc_context(STYLE):
            fig = plot(*args, **kwargs)
            fig.canvas.draw()
        return fig

    return styled


def _drawn_texts(fig: Figure) -> list[tuple[Text, Bbox]]:
    """The non-empty texts a draw of ``fig`` paints, with their extents in pixels."""
    drawn: list[tuple[Text, Bbox]] = []
    original = Text.draw

    def record(text: Text, renderer) -> None:
        if text.get_visible() and text.get_text().strip():
            drawn.append((text, text.get_window_extent(renderer)))
        original(text, renderer)

    with mock.patch.object(Text, "draw", record):
        fig.canvas.draw()
    return drawn


def _covers_data(ax, box: Bbox) -> bool:
    """Whether ``box`` (pixels) lies over a line, marker, error bar or bar of ``ax``."""
    for line in ax.get_lines():
        path = line.get_transform().transform_path(line.get_path())
        if line.get_linestyle() not in ("None", "", " ") and path.intersects_bbox(box, filled=False):
            return True
        if line.get_marker() not in ("None", "", " ", None) and box.count_contains(path.vertices):
            return True
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            transform = collection.get_transform()
            if any(transform.transform_path(p).intersects_bbox(box, filled=False)
                   for p in collection.get_paths()):
                return True
        elif isinstance(collection, PathCollection):
            points = collection.get_offset_transform().transform(collection.get_offsets())
            if box.count_contains(points):
                return True
    return any(patch.get_window_extent().overlaps(box) for patch in ax.patches)


def layout_problems(fig: Figure, screen_px: float = 360, min_text_px: float = 8.0) -> list[str]:
    """What would make ``fig`` hard to read when shown ``screen_px`` pixels wide (a phone).

    Reports text whose font would be smaller than ``min_text_px`` pixels, pairs of texts
    that overlap (tick labels, annotations, titles) and legends drawn over the data. An empty
    list means none of these; it does not judge colours or content.
    """
    texts = _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    width_px = fig.get_tightbbox(renderer).width * fig.dpi
    scale = min(1.0, screen_px / width_px)
    problems = []
    for text, _ in texts:
        size = text.get_fontsize() * fig.dpi / 72 * scale
        if size < min_text_px:
            problems.append(f"text {text.get_text()!r} would be set in a {size:.1f}-px font")
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        if box_a.padded(-1).overlaps(box_b.padded(-1)):
            problems.append(f"texts {a.get_text()!r} and {b.get_text()!r} overlap")
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and _covers_data(ax, legend.get_window_extent(renderer)):
            problems.append(f"the legend of {ax.get_title() or 'an axes'!r} covers data")
    return problems


def sample_indices_per_class(labels: torch.Tensor, per_class: int, num_classes: int) -> torch.Tensor:
    """The first ``per_class`` indices of each class, as a ``(num_classes, per_class)`` tensor."""
    rows = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()[:per_class]
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than per_class={per_class}")
        rows.append(idx)
    return torch.stack(rows)


def legend_below(fig: Figure, *axes, ncols: int = 2) -> None:
    """One legend for the figure, under its plots, where it cannot cover data.

    The entries are those of ``axes`` in order (by default the first axes alone), so that
    panels that repeat the same series list it once.
    """
    handles, labels = [], []
    for ax in axes or fig.axes[:1]:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


@book_style
def plot_samples_per_class(dataset: ImageDataset, per_class: int = 8) -> Figure:
    """A grid of training images: one row per class, ``per_class`` examples in each row."""
    grid = sample_indices_per_class(dataset.train_labels, per_class, len(dataset.classes))
    rows = len(dataset.classes)
    fig, axes = plt.subplots(rows, per_class, layout="none",
                             figsize=(COLUMN_INCHES, 0.8 * COLUMN_INCHES * rows / per_class + 0.4))
    fig.subplots_adjust(left=0.2, right=1, bottom=0, top=1 - 0.4 / fig.get_figheight(),
                        wspace=0.05, hspace=0.05)
    for c, row in enumerate(grid):
        for j, i in enumerate(row.tolist()):
            ax = axes[c, j]
            image = dataset.train_images[i]
            if image.shape[0] == 1:
                ax.imshow(image[0].numpy(), cmap="gray_r")
            else:
                ax.imshow(image.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[c, 0].set_ylabel(dataset.classes[c], rotation=0, ha="right", va="center")
    fig.suptitle(f"{dataset.name}: the first {per_class} training images of each class")
    return fig


@book_style
def plot_class_counts(dataset: ImageDataset) -> Figure:
    """Bar chart of the number of training and test images per class."""
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.2))
    positions = torch.arange(len(dataset.classes)).float()
    ax.bar(positions - 0.2, dataset.class_counts("train"), width=0.4, label="train")
    ax.bar(positions + 0.2, dataset.class_counts("test"), width=0.4, label="test")
    long_names = max(map(len, dataset.classes)) > 2
    ax.set_xticks(positions.tolist(), dataset.classes, rotation=45 if long_names else 0,
                  ha="right" if long_names else "center")
    ax.set_xlabel("class")
    ax.set_ylabel("number of images")
    ax.set_title(f"{dataset.name}: images per class")
    legend_below(fig)
    return fig


@book_style
def plot_pipeline() -> Figure:
    """Diagram of offline, response-based distillation: a frozen teacher's softened outputs
    and the ground-truth labels both feed the student's loss."""
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6)
    ax.axis("off")
    width, height = 2.1, 1.6
    boxes = {
        "data": (0.05, 2.2, "images x"),
        "teacher": (2.6, 4.0, "teacher\n(frozen)\nlogits v"),
        "student": (2.6, 0.4, "student\n(trained)\nlogits z"),
        "soft_t": (5.15, 4.0, "soft targets\nsoftmax(v/T)"),
        "soft_s": (5.15, 0.4, "softmax(z/T)\nsoftmax(z)"),
        "loss": (7.8, 2.2, "loss\nw CE(z, y) +\n(1-w) T² KL"),
    }
    for x, y, text in boxes.values():
        ax.add_patch(plt.Rectangle((x, y), width, height, facecolor="#e8eef7", edgecolor="#34495e"))
        ax.text(x + width / 2, y + height / 2, text, ha="center", va="center")

    def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#34495e"})

    arrow((1.1, 3.8), (2.6, 4.8))
    arrow((1.1, 2.2), (2.6, 1.2))
    arrow((4.7, 4.8), (5.15, 4.8))
    arrow((4.7, 1.2), (5.15, 1.2))
    arrow((7.25, 4.0), (7.9, 3.8))
    arrow((7.25, 2.0), (7.9, 2.2))
    ax.text(8.85, 5.5, "labels y", ha="center", va="center")
    arrow((8.85, 5.2), (8.85, 3.8))
    ax.set_title("Offline, response-based knowledge distillation")
    return fig


@book_style
def plot_softened_distributions(probabilities: dict[float, torch.Tensor], classes: tuple[str, ...],
                                true_class: int) -> Figure:
    """Bar charts of one example's class distribution at several temperatures (log scale)."""
    temps = sorted(probabilities)
    fig, axes = plt.subplots(1, len(temps), figsize=(COLUMN_INCHES, 2.9), sharey=True)
    for ax, temperature in zip(axes, temps):
        probs = probabilities[temperature]
        colors = ["#c0392b" if c == true_class else "#2c3e50" for c in range(len(classes))]
        ax.bar(range(len(classes)), probs.tolist(), color=colors)
        ax.set_yscale("log")
        ax.set_ylim(1e-8, 1.5)
        ax.set_xticks(range(len(classes)), classes)
        ax.set_xlabel("class")
        ax.set_title(f"T = {temperature:g}")
    axes[0].set_ylabel("teacher probability")
    fig.suptitle(f"One digit's soft targets (true class {classes[true_class]} in red)")
    return fig


@book_style
def plot_kd_term_vs_temperature(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                temperatures: list[float]) -> Figure:
    """The KD term and the size of its gradient as functions of T, with and without the T^2 factor."""
    from kdlib.losses import kd_divergence

    values, grads = [], []
    for t in temperatures:
        z = student_logits.clone().requires_grad_(True)
        kl = kd_divergence(z, teacher_logits, t)
        (grad,) = torch.autograd.grad(kl, z)
        values.append(kl.item())
        grads.append(grad.norm().item())
    squares = [t * t for t in temperatures]
    fig, axes = plt.subplots(2, 1, figsize=(COLUMN_INCHES, 5.2), sharex=True)
    panels = ((values, "KL term (nats)", "The KD term"), (grads, "gradient norm", "Its gradient"))
    for ax, (unscaled, ylabel, title) in zip(axes, panels):
        ax.loglog(temperatures, unscaled, "o-", label="KL, unscaled")
        ax.loglog(temperatures, [s * u for s, u in zip(squares, unscaled)], "s-", label="T² · KL")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    axes[1].set_xlabel("temperature T")
    legend_below(fig)
    return fig


@book_style
def plot_sweep(table, x: str, y: str, hue: str, xlabel: str, ylabel: str, title: str) -> Figure:
    """Line plot of ``y`` against ``x`` for each value of ``hue`` in a results DataFrame."""
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.6))
    for value, group in table.groupby(hue):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], "o-", label=f"{hue} = {value:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend_below(fig, ncols=3)
    return fig


@book_style
def plot_variance_vs_n(table, predictor: str) -> Figure:
    """Log-log plot of the two risk estimators' variances against N (Monte-Carlo with 95%
    intervals as error bars, exact values as lines) for one predictor of a Lemma 1 table."""
    rows = table[table.predictor == predictor].sort_values("N")
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 4.2))
    for label, key, color in (("empirical risk", "emp", "#c0392b"), ("Bayes-distilled risk", "Bayes", "#2c3e50")):
        value = rows[f"Var {key} (MC)"]
        err = [value - rows[f"{key} CI low"], rows[f"{key} CI high"] - value]
        ax.errorbar(rows.N, value, yerr=err, fmt="o", color=color, capsize=3, label=f"{label}: Monte-Carlo")
        ax.plot(rows.N, rows[f"Var {key} (exact)"], "-", color=color, alpha=0.6, label=f"{label}: exact")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size N")
    ax.set_ylabel("variance of the risk estimate")
    ax.set_title(f"The two risk estimates ({predictor})")
    legend_below(fig)
    return fig


@book_style
def plot_sampling_distributions(samples: dict[str, np.ndarray], risk: float, n: int) -> Figure:
    """Histograms of risk estimates over many samples S of size ``n`` (e.g. the empirical and the
    Bayes-distilled risk), with the true risk ``R(f)`` and each estimate's standard deviation."""
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 3.8))
    values = np.concatenate(list(samples.values()))
    bins = np.linspace(values.min(), values.max(), 60)
    for (name, draws), color in zip(samples.items(), ("#c0392b", "#2c3e50", "#27ae60")):
        ax.hist(draws, bins=bins, alpha=0.55, color=color, label=f"{name} (sd {draws.std(ddof=1):.3f})")
    ax.axvline(risk, color="black", ls="--", label=f"true risk R(f) = {risk:.3f}")
    ax.set_xlabel(f"risk estimate on a sample of N = {n}")
    ax.set_ylabel("number of samples")
    ax.set_title("Sampling distributions of the two estimates")
    legend_below(fig, ncols=1)
    return fig


@book_style
def plot_curves_vs_n(table, group: str, y: str, low: str, high: str, ylabel: str, title: str) -> Figure:
    """Log-log curves of ``y`` against N, one per value of ``group``, with 95% bands."""
    fig, ax = plt.subplots(figsize=(COLUMN_INCHES, 4.2))
    for name, rows in table.groupby(group, sort=False):
        rows = rows.sort_values("N")
        line, = ax.plot(rows.N, rows[y], "o-", label=str(name))
        ax.fill_between(rows.N, rows[low], rows[high], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend_below(fig)
    return fig


_NUMBER_CHARS = r"[\s\d.,+\-−–±%×x\[\]()/]*"  # digits, signs, brackets, separators
_NUMBER_TEXT = re.compile(_NUMBER_CHARS + r"\d" + _NUMBER_CHARS)
"""Text that is only formatted numbers: ``"+4.4"``, ``"1,500"``, ``"[+0.02, +0.23]"``, ``"2.5x"``."""


def _is_numeric_column(column) -> bool:
    """Whether a table column holds numbers: a numeric dtype (not booleans), or text that is
    only formatted numbers (see ``_NUMBER_TEXT``; ``1e-3`` counts, blanks and dashes are
    skipped)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_bool_dtype(column):
        return False
    if is_numeric_dtype(column):
        return True
    blank = {"", "-", "–", "—"}
    values = [v for v in column.dropna() if not (isinstance(v, str) and v.strip() in blank)]

    def is_number(value) -> bool:
        if isinstance(value, str):
            mantissa = re.sub(r"(?<=\d)e[+-]?(?=\d)", "", value)  # drop the e- of 1e-3
            return _NUMBER_TEXT.fullmatch(mantissa) is not None
        return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)

    return bool(values) and all(is_number(value) for value in values)


def show_table(frame, digits: int = 2, formats: dict | None = None):
    """A table for reading, in the book's one table style: numbers with ``digits`` decimals (or
    ``formats`` per column), integers with thousands separators, no index column, numeric
    columns right-aligned and text columns left-aligned. The HTML ids are derived from the
    columns, so the same table renders to the same HTML on every run (nbval compares it); the
    book's stylesheet (``book/_static/readable.css``) makes the cells compact on a phone."""
    import hashlib

    uuid = hashlib.sha256("|".join(map(str, frame.columns)).encode()).hexdigest()[:8]
    formats = formats or {}
    others = [column for column in frame.columns if column not in formats]
    styler = frame.style.format(precision=digits, thousands=",", na_rep="", subset=others)
    if formats:
        styler = styler.format(formats, na_rep="", subset=list(formats))
    styles = [{"selector": "th, td", "props": "padding: 0.15em 0.45em; text-align: right;"},
              {"selector": "th", "props": "border-bottom: 1px solid #999;"}]
    text = [i for i in range(frame.shape[1]) if not _is_numeric_column(frame.iloc[:, i])]
    if text:
        selector = ", ".join(f"th.col{i}, td.col{i}" for i in text)
        styles.append({"selector": selector, "props": "text-align: left;"})
    return styler.hide(axis="index").set_uuid(uuid).set_table_styles(styles)
