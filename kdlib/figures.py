"""Plots the chapters share, so that notebook cells stay short."""

from __future__ import annotations

import matplotlib.pyplot as plt
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
