"""Chapter 10's experiment (kdlib.experiments.modern) on a tiny synthetic MNIST: selection on
validation, then the chosen settings' final seeds; both scorings recorded; the verdict table
built from planned rows."""

from __future__ import annotations

import pytest

from conftest import striped
from kdlib.data import ImageDataset
from kdlib.experiments import MissingRows, modern

pytestmark = pytest.mark.filterwarnings("ignore:epoch .* is at chance")


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    images, labels = striped(700, (1, 28, 28), spacing=2)
    data = ImageDataset("tiny", images[:600], labels[:600], images[600:], labels[600:],
                        tuple("0123456789"), (0.1307,), (0.3081,), "synthetic digits")
    monkeypatch.setitem(modern.SCALES, "quick", modern.ModernScale(labelled=100, final_seeds=(0, 1),
                                                                   selection_seeds=(100,), steps=12))
    monkeypatch.setattr(modern, "VALIDATION_SIZE", 200)
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    return data


def test_selection_then_final_rows_with_both_scorings(tiny, tmp_path):
    data = modern.run_modern("quick", out=tmp_path / "m.json", progress=False, dataset=tiny)
    scale = modern.SCALES["quick"]
    selection = modern.selection_runs(scale)
    assert all(run.row_id() in data["rows"] for run in selection)
    chosen = modern.chosen_settings(data, scale)
    assert set(chosen) == set(modern.CANDIDATES)
    for method, setting in chosen.items():
        for seed in scale.final_seeds:
            row = data["rows"][modern.ModernRun(method, setting, "final", seed).row_id()]
            assert row["accuracy_best_epoch"] >= row["accuracy"]  # best over epochs includes the last
            assert len(row["curve"]) == len(row["train_accuracy"])
    summary = data["teacher_logits"]
    assert len(summary["non_target_mass_T4"]) == scale.labelled


    table = modern.verdict_table(data)
    assert list(table.method) == [modern.METHOD_NAMES[m] for m in modern.CANDIDATES]
    # selection used validation only: every chosen setting is the best by mean validation accuracy
    for method in modern.choices(modern.CANDIDATES):
        setting = chosen[method]

        def val(s):
            return data["rows"][modern.ModernRun(method, s, "select", 100).row_id()]["validation_accuracy"]
        assert val(setting) == max(val(s) for s in modern.settings(method))


def test_a_missing_final_row_is_named(tiny, tmp_path):
    data = modern.run_modern("quick", out=tmp_path / "m.json", progress=False, dataset=tiny)
    victim = next(k for k in data["rows"] if k.startswith("dkd/") and "/final/" in k)
    del data["rows"][victim]
    with pytest.raises(MissingRows, match="python -m kdlib.experiments modern"):
        modern.verdict_table(data)


def test_every_method_builds_its_terms():
    for method, candidates in modern.CANDIDATES.items():
        for candidate in candidates:
            assert modern.terms_for(method, candidate, steps=100)
    with pytest.raises(ValueError, match="unknown method"):
        modern.terms_for("fitnets", {}, 10)
