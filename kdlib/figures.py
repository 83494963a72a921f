"""Plots the chapters share, so that notebook cells stay short."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from kdlib.data import ImageDataset


def sample_indices_per_class(labels: torch.Tensor, per_class: int, num_classes: int) -> torch.Tensor:
    """The first ``per_class`` indices of each class, as a ``(num_classes, per_class)`` tensor."""
    rows = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()[:per_class]
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than per_class={per_class}")
        rows.append(idx)
    return torch.stack(rows)


def plot_samples_per_class(dataset: ImageDataset, per_class: int = 8) -> plt.Figure:
    """A grid of training images: one row per class, ``per_class`` examples in each row."""
    grid = sample_indices_per_class(dataset.train_labels, per_class, len(dataset.classes))
    fig, axes = plt.subplots(len(dataset.classes), per_class,
                             figsize=(per_class * 0.8, len(dataset.classes) * 0.85))
    for c, row in enumerate(grid):
        for j, i in enumerate(row.tolist()):
            ax = axes[c, j]
            image = dataset.train_images[i]
            if image.shape[0] == 1:
                ax.imshow(image[0], cmap="gray_r")
            else:
                ax.imshow(image.permute(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[c, 0].set_ylabel(dataset.classes[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{dataset.name}: the first {per_class} training images of each class")
    fig.tight_layout()
    return fig


def plot_class_counts(dataset: ImageDataset) -> plt.Figure:
    """Bar chart of the number of training and test images per class."""
    fig, ax = plt.subplots(figsize=(7, 3))
    positions = torch.arange(len(dataset.classes)).float()
    ax.bar(positions - 0.2, dataset.class_counts("train"), width=0.4, label="train")
    ax.bar(positions + 0.2, dataset.class_counts("test"), width=0.4, label="test")
    ax.set_xticks(positions.tolist(), dataset.classes, rotation=30 if max(map(len, dataset.classes)) > 2 else 0)
    ax.set_xlabel("class")
    ax.set_ylabel("number of images")
    ax.set_title(f"{dataset.name}: images per class")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_pipeline() -> plt.Figure:
    """Diagram of offline, response-based distillation: a frozen teacher's softened outputs
    and the ground-truth labels both feed the student's loss."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.axis("off")
    boxes = {
        "data": (0.2, 1.6, "training\nimages x"),
        "teacher": (2.6, 2.7, "teacher (large,\npre-trained, frozen)"),
        "student": (2.6, 0.5, "student\n(small, trained)"),
        "soft_t": (5.2, 2.7, "softmax(v / T)\nsoft targets"),
        "soft_s": (5.2, 0.5, "softmax(z / T)\nand softmax(z)"),
        "loss": (7.8, 1.6, "w_label CE(z, y)\n+ (1 - w_label) T^2 KL"),
    }
    for x, y, text in boxes.values():
        ax.add_patch(plt.Rectangle((x, y), 2.0, 0.9, facecolor="#e8eef7", edgecolor="#34495e"))
        ax.text(x + 1.0, y + 0.45, text, ha="center", va="center", fontsize=9)

    def arrow(start: tuple[float, float], end: tuple[float, float], label: str = "") -> None:
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#34495e"})
        if label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, label, fontsize=8, ha="center")

    arrow((2.2, 2.2), (2.6, 3.1))
    arrow((2.2, 1.9), (2.6, 1.0))
    arrow((4.6, 3.15), (5.2, 3.15), "logits v")
    arrow((4.6, 0.95), (5.2, 0.95), "logits z")
    arrow((7.2, 3.1), (7.8, 2.4))
    arrow((7.2, 1.0), (7.8, 1.8))
    ax.text(8.8, 3.2, "labels y", ha="center", fontsize=9)
    arrow((8.8, 3.1), (8.8, 2.5))
    ax.text(5.0, 0.1, "gradients update the student only; the teacher's logits can be computed once, "
            "before training (offline)", ha="center", fontsize=8, style="italic")
    ax.set_title("Offline, response-based knowledge distillation")
    return fig


def plot_softened_distributions(probabilities: dict[float, torch.Tensor], classes: tuple[str, ...],
                                true_class: int) -> plt.Figure:
    """Bar charts of one example's class distribution at several temperatures (log scale)."""
    temps = sorted(probabilities)
    fig, axes = plt.subplots(1, len(temps), figsize=(3.2 * len(temps), 2.8), sharey=True)
    for ax, temperature in zip(axes, temps):
        probs = probabilities[temperature]
        colors = ["#c0392b" if c == true_class else "#2c3e50" for c in range(len(classes))]
        ax.bar(range(len(classes)), probs.tolist(), color=colors)
        ax.set_yscale("log")
        ax.set_ylim(1e-8, 1.5)
        ax.set_xticks(range(len(classes)), classes)
        ax.set_xlabel("class")
        ax.set_title(f"T = {temperature:g}")
    axes[0].set_ylabel("teacher probability (log scale)")
    fig.suptitle(f"Raising T reveals the teacher's 'dark knowledge' (true class {classes[true_class]} in red)")
    fig.tight_layout()
    return fig


def plot_kd_term_vs_temperature(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                temperatures: list[float]) -> plt.Figure:
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
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    panels = (
        (values, "KL (unscaled)", "T² · KL", "loss value (nats)", "The KL term vanishes as T grows; T² · KL levels off"),
        (grads, "‖∂ KL / ∂z‖", "‖∂ (T² · KL) / ∂z‖", "gradient norm", "Gradients shrink like 1/T² unless scaled by T²"),
    )
    for ax, (unscaled, label, scaled_label, ylabel, title) in zip(axes, panels):
        ax.loglog(temperatures, unscaled, "o-", label=label)
        ax.loglog(temperatures, [s * u for s, u in zip(squares, unscaled)], "s-", label=scaled_label)
        ax.set_xlabel("temperature T")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_sweep(table, x: str, y: str, hue: str, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """Line plot of ``y`` against ``x`` for each value of ``hue`` in a results DataFrame."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for value, group in table.groupby(hue):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], "o-", label=f"{hue} = {value:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_variance_vs_n(table, predictor: str) -> plt.Figure:
    """Log-log plot of the two risk estimators' variances against N (Monte-Carlo with 95%
    intervals as error bars, exact values as lines) for one predictor of a Lemma 1 table."""
    rows = table[table.predictor == predictor].sort_values("N")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, key, color in (("empirical risk", "emp", "#c0392b"), ("Bayes-distilled risk", "Bayes", "#2c3e50")):
        value = rows[f"Var {key} (MC)"]
        err = [value - rows[f"{key} CI low"], rows[f"{key} CI high"] - value]
        ax.errorbar(rows.N, value, yerr=err, fmt="o", color=color, capsize=3, label=f"{label}: Monte-Carlo")
        ax.plot(rows.N, rows[f"Var {key} (exact)"], "-", color=color, alpha=0.6, label=f"{label}: exact")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size N")
    ax.set_ylabel("variance of the risk estimate")
    ax.set_title(f"Both variances fall as 1/N; Bayes targets stay below\n(predictor: {predictor})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sampling_distributions(samples: dict[str, np.ndarray], risk: float, n: int) -> plt.Figure:
    """Histograms of risk estimates over many samples S of size ``n`` (e.g. the empirical and the
    Bayes-distilled risk), with the true risk ``R(f)`` and each estimate's standard deviation."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    values = np.concatenate(list(samples.values()))
    bins = np.linspace(values.min(), values.max(), 60)
    for (name, draws), color in zip(samples.items(), ("#c0392b", "#2c3e50", "#27ae60")):
        ax.hist(draws, bins=bins, alpha=0.55, color=color, label=f"{name} (sd {draws.std(ddof=1):.3f})")
    ax.axvline(risk, color="black", ls="--", label=f"true risk R(f) = {risk:.3f}")
    ax.set_xlabel(f"risk estimate on a sample of N = {n}")
    ax.set_ylabel("number of samples")
    ax.set_title("Same mean, different spread")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves_vs_n(table, group: str, y: str, low: str, high: str, ylabel: str, title: str) -> plt.Figure:
    """Log-log curves of ``y`` against N, one per value of ``group``, with 95% bands."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, rows in table.groupby(group, sort=False):
        rows = rows.sort_values("N")
        line, = ax.plot(rows.N, rows[y], "o-", label=str(name))
        ax.fill_between(rows.N, rows[low], rows[high], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_table(frame, digits: int = 2, formats: dict | None = None):
    """A table for reading: numbers with ``digits`` decimals (or ``formats`` per column),
    thousands separators, no index column, cells spaced apart and right-aligned. The HTML ids are derived from the columns, so the
    same table renders to the same HTML on every run (nbval compares it)."""
    import hashlib

    uuid = hashlib.sha256("|".join(map(str, frame.columns)).encode()).hexdigest()[:8]
    formats = formats or {}
    others = [column for column in frame.columns if column not in formats]
    styler = frame.style.format(precision=digits, thousands=",", na_rep="", subset=others)
    if formats:
        styler = styler.format(formats, na_rep="", subset=list(formats))
    spacing = [{"selector": "th, td", "props": "padding: 0.15em 0.45em; text-align: right;"},
               {"selector": "th", "props": "border-bottom: 1px solid #999;"}]
    return styler.hide(axis="index").set_uuid(uuid).set_table_styles(spacing)
