"""The pieces of chapter 7: calibration, paired gaps, cached checkpoints, subsets, shifts, threads."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from kdlib.augment import random_shift
from kdlib.calibration import expected_calibration_error, log_loss, reliability_bins
from kdlib.experiments import regimes
from kdlib.experiments.mnist import balanced_subset
from kdlib.stats import gap_by_seed, matching_rows, paired_gap, seed_differences
from kdlib.threads import threads_for


def test_ece_of_known_predictions() -> None:
    # two bins used: confidence 0.9 (4 of 5 right: gap 0.1) and 0.6 (1 of 5 right: gap 0.4)
    probs = torch.tensor([[0.9, 0.1]] * 5 + [[0.6, 0.4]] * 5)
    labels = torch.tensor([0, 0, 0, 0, 1] + [0, 1, 1, 1, 1])
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)
    bins = reliability_bins(probs, labels, bins=10)
    assert bins.counts[9] == 0 and bins.counts[8] == 5 and bins.counts[6] == 5
    assert bins.accuracy[8] == pytest.approx(0.8) and math.isnan(bins.accuracy[0])


def test_perfectly_calibrated_predictions_have_zero_ece() -> None:
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0)


def test_log_loss_and_bad_inputs() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    assert log_loss(logits, torch.tensor([1])) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="long"):
        expected_calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(torch.tensor([[2.0, 0.5]]), torch.tensor([1]))


def test_paired_gap_matches_a_hand_computation() -> None:
    gap = paired_gap([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])  # differences 2, 3, 4: mean 3, sd 1
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2)
    assert (gap.mean, gap.std, gap.n) == (3.0, 1.0, 3)
    assert gap.low == pytest.approx(3 - half) and gap.high == pytest.approx(3 + half)
    assert gap.excludes_zero
    assert not paired_gap([1.0, 2.0], [1.5, 1.0]).excludes_zero
    with pytest.raises(ValueError, match="same length"):
        paired_gap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_gap([1.0], [2.0])


def test_gaps_are_matched_by_seed() -> None:
    # seed 3 has no baseline run and is left out; the rows are in no particular order
    runs = pd.DataFrame({"method": ["kd", "nokd", "kd", "nokd", "kd", "kd"],
                         "teacher": ["a", None, "a", None, "a", "b"],
                         "seed": [1, 2, 2, 1, 3, 1], "accuracy_pct": [93.0, 90.0, 95.0, 91.0, 99.0, 50.0]})
    assert len(matching_rows(runs, method="nokd", teacher=None)) == 2
    kd, nokd = {"method": "kd", "teacher": "a"}, {"method": "nokd"}
    assert seed_differences(runs, kd, nokd).to_dict() == {1: 2.0, 2: 5.0}
    gap = gap_by_seed(runs, kd, nokd)
    assert (gap.mean, gap.n) == (3.5, 2)


def test_balanced_subset() -> None:
    labels = torch.arange(10).repeat(50)
    idx = balanced_subset(labels, 103, seed=1)
    assert len(idx) == 103 and len(set(idx.tolist())) == 103
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts.min() >= 10
    assert torch.equal(idx, balanced_subset(labels, 103, seed=1))
    assert not torch.equal(idx, balanced_subset(labels, 103, seed=2))
    assert torch.equal(balanced_subset(labels, 10_000, seed=0), torch.arange(500))


def test_random_shift_moves_without_mirroring() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 2] = 1.0  # an asymmetric point
    shifted = random_shift(image.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0), max_shift=2)
    rows, cols = torch.nonzero(shifted[:, 0] == 1.0, as_tuple=True)[1:]
    assert shifted.sum() == 64  # one pixel per image, never lost inside the 2-pixel margin
    assert rows.min() >= 1 and rows.max() <= 5 and cols.min() >= 0 and cols.max() <= 4  # a mirror would reach 5


def test_threads_by_work_and_override(monkeypatch) -> None:
    monkeypatch.delenv("KDLIB_THREADS", raising=False)
    assert threads_for("mlp") == 1
    monkeypatch.setattr("kdlib.threads.available_cores", lambda: 4)
    monkeypatch.setenv("KDLIB_THREADS", "3")
    assert threads_for("resnet") == 3
    monkeypatch.setenv("KDLIB_THREADS", "two")
    with pytest.raises(ValueError, match="KDLIB_THREADS"):
        threads_for("mlp")
    with pytest.raises(ValueError, match="work"):
        threads_for("transformer")


def test_regime_runs_are_paired_and_unique() -> None:
    runs = regimes.planned_runs(regimes.SCALES["full"])
    assert len(runs) == len({r.row_id() for r in runs})
    for seed in regimes.SCALES["full"].seeds:
        for n in regimes.SCALES["full"].sizes:
            assert regimes.kd_run(n, seed, regimes.SCALES["full"].main_teacher) in runs
            assert regimes.nokd_run(n, seed) in runs
    assert regimes.epochs_for(60_000, 32) == 3 and regimes.epochs_for(250, 32) == 192
    with pytest.raises(ValueError, match="teacher"):
        regimes.StudentRun("kd", 100, 0)
    with pytest.raises(ValueError, match="unknown teacher"):
        regimes.kd_run(100, 0, "no such teacher")


def test_exercise_checkers_accept_the_reference_and_reject_typical_mistakes() -> None:
    from kdlib.calibration import expected_calibration_error
    from kdlib.course.checks import PAIRED_EXERCISE, check_ece, check_paired_interval

    assert check_ece(expected_calibration_error)
    def overall(probs, labels, bins):
        confidence, predicted = probs.max(dim=1)
        return abs((predicted == labels).float().mean() - confidence.mean()).item()
    assert not check_ece(overall) and "bin by bin" in repr(check_ece(overall))
    def unfinished(probs, labels, bins):
        raise NotImplementedError
    assert "NotImplementedError" in repr(check_ece(unfinished))
    gap = paired_gap(*PAIRED_EXERCISE)
    assert check_paired_interval(gap.low, gap.high)
    z_half = 1.96 * gap.std / math.sqrt(gap.n)  # the normal quantile instead of t: too narrow
    assert not check_paired_interval(gap.mean - z_half, gap.mean + z_half)


def test_bfloat16_switch(monkeypatch) -> None:
    from kdlib.precision import cpu_has_bfloat16, use_bfloat16

    monkeypatch.delenv("KDLIB_BF16", raising=False)
    assert use_bfloat16(torch.device("cuda")) is True
    assert use_bfloat16(torch.device("cpu")) is cpu_has_bfloat16()
    monkeypatch.setenv("KDLIB_BF16", "0")
    assert use_bfloat16(torch.device("cuda")) is False
    monkeypatch.setenv("KDLIB_BF16", "yes")
    with pytest.raises(ValueError, match="KDLIB_BF16"):
        use_bfloat16(torch.device("cpu"))
    # kernels capped below AVX-512 (CI's imitation of a CPU without it): float32, not an emulation
    monkeypatch.delenv("KDLIB_BF16")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert cpu_has_bfloat16() is True
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_has_bfloat16() is False and use_bfloat16(torch.device("cpu")) is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert cpu_has_bfloat16() is True
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert cpu_has_bfloat16() is False


def test_show_table_formats_and_is_stable() -> None:
    import re

    import pandas as pd

    from kdlib.figures import show_table

    frame = pd.DataFrame({"a": [1.23456, 2.0], "b": [1234.5, 3.0]})
    html = show_table(frame, formats={"b": "{:,.0f}"}).to_html()
    cells = re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", html, flags=re.S)).split()
    assert cells == ["a", "b", "1.23", "1,234", "2.00", "3"]  # no index column, both formats kept
    assert html == show_table(frame, formats={"b": "{:,.0f}"}).to_html()  # same HTML every time


def fake_mnist(n_train: int = 400, n_test: int = 200):
    from kdlib.data import ImageDataset

    g = torch.Generator().manual_seed(0)
    def split(n):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 60, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
        for c in range(10):  # each class lights up its own rows
            images[labels == c, 0, 2 * c:2 * c + 3] = 255
        return images, labels
    (x, y), (xt, yt) = split(n_train), split(n_test)
    return ImageDataset("fake", x, y, xt, yt, tuple("0123456789"), (0.2,), (0.3,), "synthetic digits")


def test_tiny_regimes_run_with_a_scale_of_ones_own(tmp_path, monkeypatch) -> None:
    import dataclasses

    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(regimes, "STEPS_TARGET", 20)
    tiny = dataclasses.replace(regimes.SCALES["quick"], sizes=(50, 400), seeds=(0, 1), smoothing=(0.1,),
                               teachers=("report (1 epoch)", "over-confident (5 epochs, logits x 4)"),
                               teacher_sizes=(50,))
    out = tmp_path / "regimes.json"
    data = regimes.run_regimes("quick", out=out, dataset=fake_mnist(), scale=tiny, progress=False)
    expected = {run.row_id() for run in regimes.planned_runs(tiny)}
    assert expected <= set(data["rows"])
    for name in tiny.teachers:
        assert "train_set" in data["rows"][f"teacher/{name}"]
    table = regimes.gain_by_size(data)
    assert list(table["labelled examples"]) == [50, 400] and (table.seeds == 2).all()
    assert len(regimes.teacher_gains(data, 50)) == 2
    again = regimes.run_regimes("quick", out=out, dataset=fake_mnist(), scale=tiny, progress=False)
    first_id = sorted(expected)[0]
    assert again["rows"][first_id]["train_wall_s"] == data["rows"][first_id]["train_wall_s"]  # not rerun


def test_tables_select_the_planned_runs_and_raise_when_one_is_missing() -> None:
    import copy

    from kdlib.experiments import MissingRows

    data = regimes.load_published()
    scale = regimes.recorded_scale(data)
    # the grid's cells average the grid's seeds only, also at (T, w) = the sweep-1 default,
    # where sweep 1 has more seeds in the file
    n = scale.grid_sizes[0]
    cell = regimes.grid(data, n).loc[regimes.KD_TEMPERATURE, regimes.KD_LABEL_WEIGHT]
    runs = [regimes.kd_run(n, seed, scale.main_teacher) for seed in scale.grid_seeds]
    expected = sum(data["rows"][r.row_id()]["accuracy"] for r in runs) / len(runs)
    assert len(scale.seeds) > len(scale.grid_seeds) and cell == pytest.approx(100 * expected)
    # a planned row that is missing is named, with the command that makes it
    gone = regimes.nokd_run(scale.sizes[0], scale.seeds[-1]).row_id()
    broken = copy.deepcopy(data)
    del broken["rows"][gone]
    with pytest.raises(MissingRows, match=f"1 planned row.*{gone}.*kdlib.experiments regimes --profile full"):
        regimes.gain_by_size(broken)


def test_unpaired_gap_is_welchs_interval() -> None:
    from scipy import stats as sps

    from kdlib.stats import unpaired_gap

    a, b = [91.6, 91.55, 91.62], [91.29, 91.26, 91.32, 91.30]
    gap = unpaired_gap(a, b)
    reference = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert gap.mean == pytest.approx(sum(a) / 3 - sum(b) / 4)
    assert (gap.low, gap.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert gap.excludes_zero and not unpaired_gap([1.0, 2.0], [1.5, 1.4]).excludes_zero
    with pytest.raises(ValueError, match="at least 2 runs"):
        unpaired_gap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no spread"):
        unpaired_gap([1.0, 1.0], [2.0, 2.0])


def test_mean_interval_is_the_t_interval_of_a_mean() -> None:
    from kdlib.stats import mean_interval

    gap = mean_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3)
    assert gap.mean == pytest.approx(2.0)
    assert gap.high - gap.mean == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
