"""The committed CIFAR-10 result file: complete, at the promised scale, with provenance."""

from __future__ import annotations

import json
import re

import pytest

from kdlib.experiments import RESULTS_DIR, cifar

PROVENANCE_FIELDS = ("command", "git_commit", "started_utc", "environment", "profile", "scale", "data_source", "device")


@pytest.fixture(scope="module")
def published() -> dict:
    path = RESULTS_DIR / "cifar10_full.json"
    assert path.exists(), "results/cifar10_full.json is missing: python -m kdlib.experiments cifar10 --profile full"
    return json.loads(path.read_text())


def test_every_row_is_present_with_provenance(published: dict) -> None:
    assert published["provenance"]["profile"] == "full"
    for field in PROVENANCE_FIELDS:
        assert field in published["provenance"], field
    scale = published["provenance"]["scale"]
    assert scale["width"] >= 0.25
    assert "teacher" in published["rows"]
    for row, seed in cifar.planned_runs(cifar.SCALES["full"], cifar.TABLE2):
        result = published["rows"][row.row_id(seed)]
        assert 0.1 < result["accuracy"] <= 1.0 and result["train_wall_s"] > 0
    architectures = {row.architecture for row in cifar.TABLE2} | {"teacher"}
    assert architectures <= set(published["inference"])


def test_seeds_per_row(published: dict) -> None:
    table = cifar.summary_table(published).set_index("experiment")
    assert (table.seeds >= 3).all()
    assert (table.loc[list(cifar.CLAIM_ROWS), "seeds"] >= 5).all()


def test_teacher_reaches_the_target(published: dict) -> None:
    assert cifar.teacher_accuracy(published) >= 85.0


def test_kd_helps_on_the_reduced_training_set(published: dict) -> None:
    gaps = cifar.claim_gaps(published)
    assert gaps["reduced"].n >= 5 and gaps["reduced"].low > 0, gaps


def test_students_are_faster_than_the_teacher(published: dict) -> None:
    table = cifar.summary_table(published)
    assert (table.flop_ratio > 1).all() and (table.throughput_ratio > 1).all()


def test_run_history_names_what_each_run_did(published: dict) -> None:
    history = cifar.run_history(published)
    assert len(history) == 1 + len(published.get("resumed", []))
    only_timing = history.command.str.contains("--inference-only")
    assert (history["trains rows"] == ~only_timing).all()
    assert not history.command.str.contains("--out").any()


def test_report_ratio_fit_covers_every_row(published: dict) -> None:
    fit = cifar.report_ratio_fit(published)
    assert list(fit.index) == [row.name for row in cifar.TABLE2]
    assert (fit > 0).all().all()


def test_table2_names_a_missing_planned_run() -> None:
    import copy

    from kdlib.experiments import MissingRows

    published = cifar.load_published()
    row = cifar.TABLE2[-1]
    broken = copy.deepcopy(published)
    del broken["rows"][row.row_id(0)]
    with pytest.raises(MissingRows, match=re.escape(row.row_id(0))):
        cifar.summary_table(broken)
