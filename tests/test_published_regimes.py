"""The committed regimes result file (chapter 7): complete, with provenance, and what it shows."""

from __future__ import annotations

import json

import pytest

from kdlib.experiments import RESULTS_DIR, regimes

REQUIRED = ("kind", "seed", "train_size", "teacher", "temperature", "label_weight", "accuracy")


@pytest.fixture(scope="module")
def published() -> dict:
    path = RESULTS_DIR / "mnist_regimes_full.json"
    assert path.exists(), "results/mnist_regimes_full.json is missing: python -m kdlib.experiments regimes --profile full"
    return json.loads(path.read_text())


def test_every_planned_row_is_present_with_its_fields(published: dict) -> None:
    assert published["provenance"]["profile"] == "full"
    for field in ("command", "git_commit", "environment", "scale", "data_source"):
        assert field in published["provenance"]
    for run in regimes.planned_runs(regimes.SCALES["full"]):
        row = published["rows"][run.row_id()]
        assert all(field in row for field in REQUIRED)
        assert 0.1 < row["accuracy"] <= 1.0
    for name in regimes.TEACHERS:
        teacher = published["rows"][f"teacher/{name}"]
        assert {"accuracy", "log_loss", "ece", "reliability", "train_set"} <= set(teacher)


def test_smallest_size_gain_is_above_zero_and_shrinks_with_data(published: dict) -> None:
    table = regimes.gain_by_size(published)
    assert table.seeds.min() >= 3
    smallest, largest = table.iloc[0], table.iloc[-1]
    assert smallest["CI low"] > 0
    assert largest.gain < smallest.gain


def test_label_smoothing_and_grid_tables_are_complete(published: dict) -> None:
    smoothing = regimes.smoothing_vs_kd(published)
    assert len(smoothing) == 2
    for n in regimes.SCALES["full"].grid_sizes:
        grid = regimes.grid(published, n)
        assert grid.shape == (len(regimes.SCALES["full"].temperatures), len(regimes.SCALES["full"].label_weights))
    assert len(regimes.anchor_table(published)) == 3


def test_fidelity_by_size_refuses_a_file_without_fidelity() -> None:
    import copy

    from kdlib.experiments import MissingRows

    old = copy.deepcopy(regimes.load_published())
    for row in old["rows"].values():
        row.pop("fidelity_train", None)
    with pytest.raises(MissingRows, match="record no fidelity"):
        regimes.fidelity_by_size(old)
