"""The committed result files: complete, with provenance, and as good as the report claims."""

from __future__ import annotations

import json
import re

import pytest

from kdlib.experiments import RESULTS_DIR
from kdlib.experiments import mnist

PROVENANCE_FIELDS = ("command", "git_commit", "started_utc", "environment", "profile", "scale", "data_source")


@pytest.fixture(scope="module")
def published() -> dict:
    path = RESULTS_DIR / "mnist_full.json"
    assert path.exists(), "results/mnist_full.json is missing: python -m kdlib.experiments mnist --profile full"
    return json.loads(path.read_text())


def test_every_row_and_seed_is_present(published: dict) -> None:
    seeds = published["provenance"]["scale"]["seeds"]
    assert published["provenance"]["profile"] == "full" and len(seeds) >= 3
    expected = {run.row_id() for run in mnist.planned_runs(tuple(seeds))}
    expected |= {f"teacher/seed{seed}" for seed in seeds}
    assert expected <= set(published["rows"])
    for row in published["rows"].values():
        assert 0.0 < row["accuracy"] <= 1.0 and row["train_wall_s"] > 0
    assert set(published["inference"]) == {"teacher", "h50", "h300", "h600"}


def test_provenance_fields(published: dict) -> None:
    for field in PROVENANCE_FIELDS:
        assert field in published["provenance"], field
    env = published["provenance"]["environment"]
    for field in ("torch", "numpy", "python", "cpu_count", "torch_threads"):
        assert field in env, field
    assert published["provenance"]["command"].startswith("python -m kdlib.experiments mnist")


def test_students_reach_the_reported_accuracy(published: dict) -> None:
    ours = mnist.summary_table(published)
    paper = mnist.paper_table1()
    shortfall = paper.accuracy_pct - 0.5 - ours.kd_accuracy_pct
    assert (shortfall <= 0).all(), ours.assign(paper=paper.accuracy_pct)[shortfall > 0]


def test_teacher_reaches_the_reported_accuracy(published: dict) -> None:
    assert mnist.teacher_accuracy(published).mean() >= mnist.REPORTED_TEACHER_ACCURACY_PCT - 0.5


def test_each_row_id_names_the_settings_its_row_was_trained_with(published: dict) -> None:
    """Resume keys carry every setting that changes a student, so a changed setting is retrained."""
    for run in mnist.planned_runs((0,)):
        kind, spec, seed = run.kind, run.spec, run.seed
        row = published["rows"][run.row_id()]
        now = mnist.student_config(spec, seed, kind).to_dict()
        # (fields added to TrainConfig after the run, at their defaults, are not in the file)
        assert row["config"] == {key: now[key] for key in row["config"]}
        assert f"_lr{row['config']['lr']:g}_w{row['config']['label_weight']:g}/" in spec.row_id(kind, seed)


def test_report_time_ratios_are_set_against_the_flop_ratios(published: dict) -> None:
    table = mnist.report_time_over_flops(published)
    assert len(table) == len(mnist.TABLE1)
    ratio = table["report time ratio"] / table["FLOP ratio"]
    assert (abs(table["report / FLOP"] - ratio) < 1e-12).all()


def test_temperature_gaps_pair_the_seeds(published: dict) -> None:
    gaps = mnist.temperature_gaps(published, (1.0, 3.5, 10.0))
    assert list(gaps["T"]) == ["1 minus 3.5", "1 minus 10", "3.5 minus 10"]
    assert (gaps.seeds == len(published["provenance"]["scale"]["seeds"])).all()
    assert (gaps["sd of differences"] > 0).all()


def test_table1_names_a_missing_planned_run() -> None:
    import copy

    from kdlib.experiments import MissingRows

    published = mnist.load_published()
    missing = mnist.planned_runs((0,))[1].row_id()
    broken = copy.deepcopy(published)
    del broken["rows"][missing]
    with pytest.raises(MissingRows, match=re.escape(missing)):
        mnist.summary_table(broken)


def test_fidelity_table_refuses_a_file_without_fidelity() -> None:
    import copy

    from kdlib.experiments import MissingRows

    old = copy.deepcopy(mnist.load_published())
    del old["rows"][mnist.planned_runs((0,))[0].row_id()]["fidelity_test"]
    with pytest.raises(MissingRows, match="record no fidelity"):
        mnist.fidelity_gaps(old)
