"""Table 2 on the fast teacher (kdlib.experiments.cifar_fast) on a tiny synthetic CIFAR-10: every
planned row is made, pairs share their initial weights, the reduced set takes as many steps as
the full set, a resumed run recomputes nothing, and the tables read planned rows only."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from conftest import striped
from kdlib.data import ImageDataset
from kdlib.experiments import MissingRows, cifar_fast, modern_cifar

pytestmark = pytest.mark.filterwarnings("ignore:epoch .* is at chance")


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    images, labels = striped(900, (3, 32, 32), spacing=3)
    data = ImageDataset("CIFAR-10", images[:700], labels[:700], images[700:], labels[700:],
                        tuple("abcdefghij"), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3), "synthetic")
    base = replace(modern_cifar.SCALES["quick"], validation=100, student_images=None, teacher_images=300,
                   teacher_widths=(16, 32, 32), batch_size=200, test_images=None)
    scale = cifar_fast.FastScale(base=base, widths={"small": (4, 8, 8), "ideal": (8, 16, 16),
                                                             "large": (16, 16, 32)},
                                 reduced_per_class=10, seeds=(0, 1))
    monkeypatch.setitem(cifar_fast.SCALES, "quick", scale)
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    return data


def test_every_row_at_every_seed_then_nothing_twice(tiny, tmp_path, monkeypatch):
    out = tmp_path / "t.json"
    data = cifar_fast.run_cifar_fast("quick", out=out, progress=False, dataset=tiny)
    scale = cifar_fast.SCALES["quick"]
    for run in cifar_fast.planned_runs(scale):
        row = data["rows"][run.row_id()]
        assert row["widths"] == list(scale.widths[run.row.size])
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["accuracy_tta"] <= 1.0
    assert data["rows"]["teacher"]["kind"] == "teacher"
    full = data["rows"]["ideal/kd/full/seed0"]
    reduced = data["rows"]["ideal/kd/reduced/seed0"]
    assert full["train_images"] == 600 and reduced["train_images"] == 100  # 10 of each class
    assert reduced["steps"] == full["steps"]  # 3 batches x 2 epochs against 1 batch x 6 epochs
    assert reduced["recipe"]["epochs"] == 3 * full["recipe"]["epochs"]
    assert "KDTerm" in "".join(full["terms"]) and "KDTerm" not in "".join(data["rows"]["ideal/labels/full/seed0"]["terms"])
    spread = data["rows"]["teacher-views"]
    assert spread["images"] == 100 and 0 <= spread["top1_agreement"] <= 1 and spread["kl_to_centre"] >= 0
    fixed, patient = data["rows"]["ideal/kd-fixed/reduced/seed0"], data["rows"]["ideal/kd/reduced-x2/seed0"]
    assert fixed["teaching"] == "fixed" and fixed["steps"] == reduced["steps"]
    assert patient["steps"] == 2 * reduced["steps"] and patient["patience"] == 2
    assert data["rows"]["ideal/labels/reduced-x2/seed0"]["steps"] == patient["steps"]

    calls = []
    monkeypatch.setattr(cifar_fast, "train_fast", lambda *a, **k: calls.append(a))
    again = cifar_fast.run_cifar_fast("quick", out=out, progress=False, dataset=tiny)
    assert calls == [] and json.dumps(again["rows"]) == json.dumps(data["rows"])

    table = cifar_fast.summary_table(data)
    assert list(table.index) == [row.name for row in cifar_fast.TABLE]
    assert (table["FLOP ratio"] > 1).all() and (table.seeds == 2).all()
    assert (table.low <= table.accuracy).all() and (table.accuracy <= table.high).all()
    gaps = cifar_fast.kd_gaps(data)
    assert set(gaps) == {row.name for row in cifar_fast.TABLE if row.kd}
    by_seed = [100 * (data["rows"][f"small/kd/full/seed{s}"]["accuracy"]
                      - data["rows"][f"small/labels/full/seed{s}"]["accuracy"]) for s in (0, 1)]
    assert gaps["Small"].mean == pytest.approx(sum(by_seed) / 2)
    difference = cifar_fast.gain_difference(data, "accuracy_tta")
    tta = cifar_fast.kd_gaps(data, "accuracy_tta")
    assert difference.mean == pytest.approx(tta["Reduced set"].mean - tta["Ideal"].mean)

    from kdlib.experiments import anchors

    frame = cifar_fast.consistency_frame(data)
    assert sorted(set(zip(frame.teaching, frame.patience))) == [
        ("consistent", 1), ("consistent", 2), ("fixed", 1), ("fixed", 2), ("nokd", 1), ("nokd", 2)]
    assert len(frame) == 12
    assert set(frame[frame.patience == 2].steps) == {2 * reduced["steps"]}
    assert set(frame[frame.patience == 2].epochs) == {2 * reduced["recipe"]["epochs"]}
    assert set(frame[frame.patience == 1].bias_epochs) == {reduced["recipe"]["whiten_bias_epochs"]}
    assert set(frame[frame.patience == 2].lookahead_from) == {2 * reduced["recipe"]["lookahead_start_epochs"]}
    fixed2 = anchors.consistency_by_seed(frame, "fixed", 2)
    assert fixed2[1] == data["rows"]["ideal/kd-fixed/reduced-x2/seed1"]["accuracy_tta"]
    assert list(anchors.consistency_table(frame).schedule) == ["1x", "2x"]
    assert len(anchors.consistency_gains(frame)) == 3 * 2 + 3 + 2

    del data["rows"]["small/labels/full/seed1"]
    with pytest.raises(MissingRows, match="python -m kdlib.experiments cifar10-fast"):
        cifar_fast.kd_gaps(data)


def test_the_feature_rows_choose_their_weights_on_validation_then_train_every_seed(tiny, tmp_path):
    features = cifar_fast.run_cifar_fast("quick", out=tmp_path / "f.json", progress=False, dataset=tiny,
                                         experiment=cifar_fast.FEATURE_EXPERIMENT)
    scale = cifar_fast.SCALES["quick"]
    assert features["experiment"] == "cifar10-features"
    assert not any(k.startswith(("small/", "ideal/kd/full", "ideal/kd-fixed")) for k in features["rows"])
    weights = cifar_fast.chosen_weights(features["rows"], scale)
    for method, candidates in cifar_fast.FEATURE_CANDIDATES.items():
        picked = [features["rows"][f"ideal/kd+{method}-w{w:g}/reduced/seed100"] for w in candidates]
        best = max(range(len(candidates)), key=lambda i: (picked[i]["validation_accuracy"], -i))
        assert weights[method] == candidates[best]
        for seed in scale.seeds:
            final = features["rows"][f"ideal/kd+{method}/reduced/seed{seed}"]
            assert final["feature_weight"] == weights[method]
            assert final["steps"] == features["rows"]["ideal/kd/reduced/seed0"]["steps"]
            assert any(f"weight={weights[method]:g}" in t or f"weight={weights[method]}" in t for t in final["terms"])

    frame = cifar_fast.feature_frame(features)
    assert sorted(frame.method.unique()) == ["at", "crd", "fitnets", "kd", "nokd"] and len(frame) == 10
    from kdlib.experiments import algorithms

    at = algorithms.paired(frame, {"method": "at"}, {"method": "kd"})
    by_hand = [100 * (features["rows"][f"ideal/kd+at/reduced/seed{s}"]["accuracy_tta"]
                      - features["rows"][f"ideal/kd/reduced/seed{s}"]["accuracy_tta"]) for s in (0, 1)]
    assert at.mean == pytest.approx(sum(by_hand) / 2)
    assert list(algorithms.gains_over_kd(frame).method) == list(algorithms.METHOD_NAMES.values())
    chosen = cifar_fast.selection_table(features)
    assert len(chosen) == 6 and (chosen.chosen == "yes").sum() == 3

    # the QAT rows: each float student trained again (and found equal to the stored one), then
    # fine-tuned at every width with its own loss, a tenth of the epochs and of the learning rate
    rows = features["rows"]
    for run in cifar_fast.planned_runs(scale, cifar_fast.QAT):
        qat, base = rows[run.row_id()], rows[cifar_fast.replace(run.row, bits=None).row_id(run.seed)]
        assert qat["float_student_reproduced"] is True and qat["float_accuracy"] == base["accuracy"]
        assert qat["recipe"]["lr"] == pytest.approx(base["recipe"]["lr"] / 10)
        assert qat["recipe"]["epochs"] == max(1, round(base["recipe"]["epochs"] / 10))
        assert ("KDTerm" in "".join(qat["terms"])) == run.row.kd
        assert ("accuracy_int8" in qat) == (run.row.bits == 8)
        if run.row.bits == 8:
            assert qat["int8"]["size_bytes"] < qat["float"]["size_bytes"]  # tiny: overhead
            assert 0 <= qat["int8_agreement_with_fake_quant"] <= 1
    table = cifar_fast.qat_table(features)
    assert list(table.bits) == ["float", "8", "4", "2"] and (table.seeds == 2).all()
    by_hand = [100 * (rows[f"ideal/kd+qat4/reduced/seed{s}"]["accuracy_tta"]
                      - rows[f"ideal/labels+qat4/reduced/seed{s}"]["accuracy_tta"]) for s in (0, 1)]
    assert table.set_index("bits").loc["4", "gain"] == pytest.approx(sum(by_hand) / 2)
    int8 = algorithms.int8_summary(cifar_fast.qat_frame(features, "accuracy").query("bits == 8"))
    assert list(int8.dataset) == ["CIFAR-10"] and int8.models.item() == 4


def test_the_large_student_is_a_file_of_its_own(tiny, tmp_path):
    large = cifar_fast.run_cifar_fast("quick", out=tmp_path / "l.json", progress=False, dataset=tiny,
                                      experiment=cifar_fast.LARGE_EXPERIMENT)
    assert large["experiment"] == "cifar10-large"
    students = {k for k in large["rows"] if not k.startswith("teacher")}
    assert students == {f"large/{loss}/full/seed{s}" for loss in ("kd", "labels") for s in (0, 1)}
    assert all(large["rows"][k]["widths"] == [16, 16, 32] for k in students)
    table = cifar_fast.summary_table(large, "accuracy_tta", rows=cifar_fast.LARGE)
    assert list(table.index) == ["Large", "Large, labels"] and (table.seeds == 2).all()
    gap = cifar_fast.kd_gaps(large, "accuracy_tta", rows=cifar_fast.LARGE)["Large"]
    by_hand = [100 * (large["rows"][f"large/kd/full/seed{s}"]["accuracy_tta"]
                      - large["rows"][f"large/labels/full/seed{s}"]["accuracy_tta"]) for s in (0, 1)]
    assert gap.mean == pytest.approx(sum(by_hand) / 2)
    with pytest.raises(MissingRows, match="cifar10-large"):
        cifar_fast.kd_gaps(large)  # TABLE's rows are not in this file


def test_the_declared_sizes_of_the_large_student():
    widths = cifar_fast.SCALES["full"].widths
    large, ideal = (cifar_fast.flops_per_image(widths[k]) for k in ("large", "ideal"))
    teacher = cifar_fast.flops_per_image(cifar_fast.SCALES["full"].base.teacher_widths)
    assert widths["large"] == (64, 128, 256)
    assert round(large / ideal, 1) == 3.3 and round(large / teacher, 2) == 0.55  # LARGE's docstring


def test_reduced_recipe_scales_every_epoch_count():
    scale = cifar_fast.SCALES["full"]
    row = next(r for r in cifar_fast.TABLE if r.reduced)
    full = scale.recipe(replace(row, reduced=False), 45_000, 45_000)
    reduced = scale.recipe(row, 5_000, 45_000)
    assert -(-45_000 // full.batch_size) == 44 and -(-5_000 // reduced.batch_size) == 5
    assert reduced.epochs == 9 * full.epochs  # 44 / 5 batches per epoch, rounded
    assert reduced.whiten_bias_epochs == 9 * full.whiten_bias_epochs
    assert reduced.lookahead_start_epochs == 9 * full.lookahead_start_epochs
    assert full.widths == reduced.widths == scale.widths["ideal"]


def test_patience_stretches_the_whole_schedule():
    scale = cifar_fast.SCALES["full"]
    once = next(r for r in cifar_fast.TABLE if r.reduced and r.kd)
    twice = next(r for r in cifar_fast.CONSISTENCY if r.patience == 2 and r.kd and r.teaching == "consistent")
    a, b = scale.recipe(once, 5_000, 45_000), scale.recipe(twice, 5_000, 45_000)
    assert (b.epochs, b.whiten_bias_epochs, b.lookahead_start_epochs) == (
        2 * a.epochs, 2 * a.whiten_bias_epochs, 2 * a.lookahead_start_epochs)
    assert twice.row_id(0) == "ideal/kd/reduced-x2/seed0" and once.row_id(0) == "ideal/kd/reduced/seed0"


def test_a_fixed_teacher_reads_the_plain_image_for_every_view():
    from kdlib.fastnet import apply_views, centre_view, view_count

    images = torch.rand(3, 3, 8, 8)
    for translate in (1, 2):
        views = view_count(translate)
        centre = (2 * translate + 1) ** 2 // 2  # computed here, not by kdlib.fastnet.centre_view
        assert centre_view(translate) == centre
        plain = apply_views(images, torch.full((3,), centre), translate)
        assert torch.equal(plain, images)  # the centre view is the image itself
        soft = torch.randn(views, 3, 10)
        fixed = cifar_fast.fixed_logits(soft, translate)
        assert fixed.shape == soft.shape
        assert all(torch.equal(fixed[v], soft[centre]) for v in range(views))
        picked = fixed[torch.tensor([0, views - 1, 3]), torch.arange(3)]  # as train() indexes it
        assert torch.equal(picked, soft[centre])
        assert cifar_fast.view_spread(fixed, translate) == pytest.approx(
            {"top1_agreement": 1.0, "kl_to_centre": 0.0, "temperature": 4.0, "views": views})
        flipped = soft.clone()
        flipped[0] = -soft[centre]  # one view whose top class is the centre's bottom one
        spread = cifar_fast.view_spread(flipped, translate)
        assert spread["kl_to_centre"] > 0 and spread["top1_agreement"] <= 1 - 1 / (views - 1) + 1e-6


def test_rows_that_do_not_apply_are_refused():
    with pytest.raises(ValueError, match="labels-only row has no teacher"):
        cifar_fast.FastRow("x", "ideal", kd=False, teaching="fixed")
    with pytest.raises(ValueError, match="teaching must be one of"):
        cifar_fast.FastRow("x", "ideal", teaching="patient")
    with pytest.raises(ValueError, match="patience must be"):
        cifar_fast.FastRow("x", "ideal", patience=0)
    with pytest.raises(ValueError, match="feature must be one of"):
        cifar_fast.FastRow("x", "ideal", reduced=True, feature="hint")
    with pytest.raises(ValueError, match="added to KD with a consistent teacher"):
        cifar_fast.FastRow("x", "ideal", kd=False, feature="at")
    with pytest.raises(ValueError, match="added to KD with a consistent teacher"):
        cifar_fast.FastRow("x", "ideal", teaching="fixed", feature="at")
    with pytest.raises(ValueError, match="applies to a row with a feature term only"):
        cifar_fast.FastRow("x", "ideal", feature_weight=1.0)
    with pytest.raises(ValueError, match="feature_weight must be > 0"):
        cifar_fast.FastRow("x", "ideal", feature="at", feature_weight=0.0)
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
        cifar_fast.FastRow("x", "ideal", bits=1)
    for wrong in ({"feature": "at"}, {"teaching": "fixed"}, {"patience": 2}):
        with pytest.raises(ValueError, match="QAT .bits. fine-tunes"):
            cifar_fast.FastRow("x", "ideal", bits=8, **wrong)
    with pytest.raises(ValueError, match="run it with run_qat_student"):
        cifar_fast.run_student(cifar_fast.Run(cifar_fast.QAT[0], 0), cifar_fast.SCALES["full"], None, None)


def test_the_qat_recipe_is_a_tenth_of_the_float_one():
    recipe = cifar_fast.SCALES["full"].recipe(cifar_fast.QAT[0], 5_000, 45_000)
    qat = cifar_fast.qat_recipe(recipe)
    assert (recipe.epochs, qat.epochs) == (45, 4) and qat.lr == pytest.approx(recipe.lr / 10)
    assert qat.lookahead_start_epochs >= qat.epochs and qat.widths == recipe.widths
    assert cifar_fast.qat_recipe(cifar_fast.replace(recipe, epochs=3)).epochs == 1
    assert [run.row_id() for run in cifar_fast.planned_runs(cifar_fast.SCALES["full"], cifar_fast.QAT)][:4] == [
        "ideal/kd+qat8/reduced/seed0", "ideal/kd+qat4/reduced/seed0", "ideal/kd+qat2/reduced/seed0",
        "ideal/labels+qat8/reduced/seed0"]


def test_the_weight_with_the_best_validation_accuracy_is_chosen():
    scale = cifar_fast.SCALES["full"]
    rows = {run.row_id(): {"validation_accuracy": 0.5} for run in cifar_fast.selection_runs(scale)}
    assert cifar_fast.chosen_weights(rows, scale) == {m: c[0] for m, c in cifar_fast.FEATURE_CANDIDATES.items()}
    rows["ideal/kd+at-w10/reduced/seed100"]["validation_accuracy"] = 0.6
    assert cifar_fast.chosen_weights(rows, scale)["at"] == 10.0
    del rows["ideal/kd+crd-w0.008/reduced/seed100"]
    with pytest.raises(KeyError):
        cifar_fast.chosen_weights(rows, scale)
    # the final feature rows are planned only once their weights are known
    planned = cifar_fast.planned_runs(scale, cifar_fast.FEATURE_PLANNED)
    assert len(planned) == 2 * 3 + 6 + 6 * 3 and not any(run.row.feature and run.row.feature_weight is None for run in planned)
    final = cifar_fast.planned_runs(scale, cifar_fast.FEATURE_PLANNED, weights={"fitnets": 1.0, "at": 10.0, "crd": 0.08})
    assert [r.weight for r in final if r.row.feature == "at" and r.row.feature_weight is None] == [10.0] * 3


def test_the_command_line_knows_the_experiment(tmp_path):
    from kdlib.experiments.__main__ import main

    with pytest.raises(SystemExit) as refused:  # a flag that does not apply is refused
        main(["cifar10-fast", "--profile", "quick", "--parts", "x", "--out", str(tmp_path / "x.json")])
    assert refused.value.code == 2


def test_the_committed_file_is_the_full_profile_and_holds_every_planned_row():
    """A rerun of the full profile resumes the committed file (same scale) and the chapter's
    tables find every row they plan."""
    from dataclasses import asdict

    data = cifar_fast.load_published()
    assert json.loads(json.dumps(asdict(cifar_fast.SCALES["full"]))) == data["provenance"]["scale"]
    assert len(cifar_fast.summary_table(data)) == len(cifar_fast.TABLE)


def test_a_run_without_a_dataset_argument_loads_one_and_runs(tiny, tmp_path, monkeypatch):
    """The command line passes no dataset: the run loads CIFAR-10 itself (here the tiny one)."""
    monkeypatch.setattr(modern_cifar, "load_cifar10", lambda: tiny)
    monkeypatch.setitem(cifar_fast.ROWS, cifar_fast.EXPERIMENT, cifar_fast.TABLE[:1])
    data = cifar_fast.run_cifar_fast("quick", out=tmp_path / "d.json", progress=False)
    assert data["rows"]["teacher-flops"]["flops_per_image"] > 0
    assert "ideal/kd/full/seed0" in data["rows"]


def test_a_qat_student_with_non_finite_weights_is_recorded_as_diverged(tiny, tmp_path, monkeypatch):
    """Non-finite weights during QAT are a result (recorded, without an accuracy, and the file
    stays valid); any other error of the run is raised."""
    qat_rows = tuple(row for row in cifar_fast.QAT if row.bits == 2 and row.kd)
    monkeypatch.setitem(cifar_fast.ROWS, cifar_fast.FEATURE_EXPERIMENT, qat_rows)
    real = cifar_fast.train_fast

    def diverging(*args, start=None, **kwargs):
        if start is None:
            return real(*args, **kwargs)
        next(start.parameters()).data.fill_(float("nan"))
        raise RuntimeError("`zero_point` must be between `quant_min` and `quant_max`.")

    monkeypatch.setattr(cifar_fast, "train_fast", diverging)
    out = tmp_path / "q.json"
    data = cifar_fast.run_cifar_fast("quick", out=out, progress=False, dataset=tiny,
                                     experiment=cifar_fast.FEATURE_EXPERIMENT)
    row = data["rows"]["ideal/kd+qat2/reduced/seed0"]
    assert row["diverged"].startswith("non-finite weights") and "accuracy" not in row
    assert row["float_accuracy"] > 0
    from kdlib.results import load_results

    assert "ideal/kd+qat2/reduced/seed1" in load_results(out)["rows"]  # valid, every row there

    def failing(*args, start=None, **kwargs):
        if start is None:
            return real(*args, **kwargs)
        raise RuntimeError("out of memory")

    monkeypatch.setattr(cifar_fast, "train_fast", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        cifar_fast.run_cifar_fast("quick", out=tmp_path / "r.json", progress=False, dataset=tiny,
                                  experiment=cifar_fast.FEATURE_EXPERIMENT)
