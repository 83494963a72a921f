"""Every figure the book shows stays legible on a phone: fonts of at least 8 px when the
figure is 360 px wide, no overlapping texts, no legend over the data.

The figures are made by the functions the chapters call, from the committed result files
(chapters 5-8) or from inputs of the same shape as the chapters' (chapters 0-4).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kdlib import figures, theory  # noqa: E402
from kdlib.data import ImageDataset  # noqa: E402
from kdlib.experiments import algorithms, cifar, mnist, regimes  # noqa: E402

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")


def fake_dataset(name: str, classes: tuple[str, ...], channels: int) -> ImageDataset:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % len(classes)
    images = torch.randint(0, 256, (200, channels, 28, 28), dtype=torch.uint8, generator=generator)
    return ImageDataset(name, images, labels, images[:50], labels[:50], classes,
                        (0.5,) * channels, (0.25,) * channels, "synthetic")


def lemma1_inputs():
    problem = theory.DiscreteProblem.random(num_x=8, num_labels=3, concentration=1.0, seed=0)
    losses = theory.log_loss_vectors(np.random.default_rng(1).normal(size=problem.bayes.shape))
    return problem, losses


def variance_figure():
    problem, losses = lemma1_inputs()
    table = theory.lemma1_table(problem, {"random predictor": losses},
                                sizes=[10, 30, 100, 300, 1000], repeats=400, seed=2)
    return figures.plot_variance_vs_n(table, "random predictor")


def sampling_figure():
    problem, losses = lemma1_inputs()
    draws = theory.simulate_discrete(problem, losses, n=30, repeats=2000, seed=9)
    risk = theory.exact_moments(problem, losses, None).mean
    return figures.plot_sampling_distributions(
        {"empirical risk": draws["empirical"], "Bayes-distilled risk": draws["bayes"]}, risk, n=30)


def lemma2_figure():
    problem, losses = lemma1_inputs()
    teachers = {"Bayes p*": problem.bayes,
                "smoothed (eps = 0.3)": theory.smoothed_teacher(problem.bayes, 0.3),
                "noisy (sigma = 0.5)": theory.noisy_teachers(problem.bayes, noise=0.5, count=50, seed=2)}
    curves = theory.lemma2_table(problem, losses, teachers, sizes=[3, 10, 100, 1000, 3000],
                                 repeats=400, seed=5)
    return figures.plot_curves_vs_n(curves, group="teacher", y="E[Delta^2] MC", low="MC CI low",
                                    high="MC CI high", ylabel="mean squared error of the risk estimate",
                                    title="A smooth but biased teacher wins at small N only")


def sweep_figure():
    rows = [{"label_weight": w, "temperature": t, "accuracy_pct": 90 + w + t / 10}
            for w in (0.0, 0.5, 1.0) for t in (1.0, 3.5, 10.0)]
    return figures.plot_sweep(pd.DataFrame(rows), x="temperature", y="accuracy_pct", hue="label_weight",
                              xlabel="temperature T", ylabel="test accuracy (%)",
                              title="Student accuracy against T for three label weights")


def softened_figure():
    logits = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.0, -3.0, 12.0, 2.0, 4.0])
    probabilities = {t: torch.softmax(logits / t, 0) for t in (1.0, 3.5, 10.0)}
    return figures.plot_softened_distributions(probabilities, tuple("0123456789"), 7)


def kd_term_figure():
    generator = torch.Generator().manual_seed(0)
    z, v = torch.randn(8, 10, generator=generator) * 3, torch.randn(8, 10, generator=generator) * 3
    return figures.plot_kd_term_vs_temperature(z, v, [1, 2, 3.5, 5, 10, 20, 50, 100])


def regimes_figures():
    data = regimes.load_published()
    sizes = sorted(data["provenance"]["scale"]["teacher_sizes"])
    grids = {n: regimes.grid(data, n) for n in data["provenance"]["scale"]["grid_sizes"]}
    return {
        "ch7 reliability": lambda: regimes.plot_reliability(data),
        "ch7 gain by size": lambda: regimes.plot_gain_by_size(regimes.gain_by_size(data)),
        "ch7 teacher gains": lambda: regimes.plot_teacher_gains(
            {n: regimes.teacher_gains(data, n) for n in sizes}),
        "ch7 grid": lambda: regimes.plot_grid(grids),
    }


FIGURES = {
    "ch0 MNIST samples": lambda: figures.plot_samples_per_class(
        fake_dataset("MNIST", tuple("0123456789"), 1), per_class=10),
    "ch0 CIFAR samples": lambda: figures.plot_samples_per_class(
        fake_dataset("CIFAR-10", CIFAR_CLASSES, 3), per_class=10),
    "ch0 class counts": lambda: figures.plot_class_counts(fake_dataset("MNIST", tuple("0123456789"), 1)),
    "ch1 pipeline": figures.plot_pipeline,
    "ch1 softened": softened_figure,
    "ch2 KD term": kd_term_figure,
    "ch2 sweep": sweep_figure,
    "ch3 variance": variance_figure,
    "ch3 sampling": sampling_figure,
    "ch4 curves": lemma2_figure,
    "ch5 accuracy": lambda: mnist.plot_accuracy(mnist.load_published()),
    "ch6 speed-up": lambda: cifar.plot_accuracy_vs_speedup(cifar.load_published()),
    "ch6 KD effect": lambda: cifar.plot_kd_effect(cifar.load_published()),
    "ch8 fake quantizer": lambda: algorithms.plot_fake_quantize(scale=0.05, bits=(2, 4)),
    "ch8 quantization": lambda: algorithms.plot_quantization(algorithms.load_published()),
    "ch8 adversarial": lambda: algorithms.plot_adversarial(
        algorithms.adversarial_curves(algorithms.load_published(), 1_000)),
    **regimes_figures(),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_is_legible_on_a_phone(name):
    fig = FIGURES[name]()
    try:
        assert figures.layout_problems(fig) == []
        assert fig.get_figwidth() <= figures.COLUMN_INCHES + 1e-9
    finally:
        plt.close(fig)


def test_layout_problems_finds_small_overlapping_text_and_covered_data():
    with plt.rc_context(figures.STYLE):
        fig, ax = plt.subplots(figsize=(12, 4))
        ax.plot([0, 1], [0, 1], label="a line from corner to corner")
        ax.legend(loc="center", fontsize=6)
        ax.text(0.2, 0.8, "one label")
        ax.text(0.2, 0.8, "another label")
    problems = " | ".join(figures.layout_problems(fig))
    plt.close(fig)
    assert "px font" in problems
    assert "'one label' and 'another label' overlap" in problems
    assert "covers data" in problems
