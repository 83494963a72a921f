"""Chapter 9's anchors: the transfer sets, the bias shift chosen on validation, fidelity, the
verdict rule, the max-norm layer, and a tiny resumable run."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from kdlib.experiments import anchors
from kdlib.fidelity import fidelity
from kdlib.models import MaxNormLinear, mlp


def test_max_norm_projects_each_units_incoming_weights_and_keeps_small_ones() -> None:
    torch.manual_seed(0)
    layer = MaxNormLinear(4, 3, max_norm=1.0)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0.1, 0, 0, 0], [0, 0, 0, 2.0]]))
        layer.bias.zero_()
    layer.constrain_()
    assert torch.allclose(layer.weight[0], torch.tensor([0.6, 0.8, 0.0, 0.0]), atol=1e-4)  # 5 -> 1
    assert torch.allclose(layer.weight[1], torch.tensor([0.1, 0.0, 0.0, 0.0]), atol=1e-6)  # kept
    assert torch.allclose(layer.weight[2], torch.tensor([0.0, 0.0, 0.0, 1.0]), atol=1e-4)
    assert torch.equal(layer(torch.eye(4)).T, layer.weight.detach())  # the forward pass is plain
    with pytest.raises(ValueError, match="max_norm"):
        MaxNormLinear(2, 2, max_norm=0)


def test_training_keeps_every_max_norm_row_within_its_bound() -> None:
    from kdlib.train import TrainConfig, train

    torch.manual_seed(0)
    model = mlp([16], max_norm=0.5)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    train(model, x, y, TrainConfig(epochs=2, batch_size=32, lr=0.5))
    norms = model[1].weight.norm(dim=1)
    assert norms.max() <= 0.5 + 1e-5
    assert (norms > 0.5 - 1e-3).any()  # a large learning rate pushed some rows onto the bound
    torch.manual_seed(0)
    plain = mlp([16])
    train(plain, x, y, TrainConfig(epochs=2, batch_size=32, lr=0.5))
    assert plain[1].weight.norm(dim=1).max() > 0.5  # without the constraint they go past it


def test_max_norm_mlp_starts_from_the_same_weights_as_a_plain_one() -> None:
    torch.manual_seed(3)
    plain = mlp([5])
    torch.manual_seed(3)
    capped = mlp([5], max_norm=100.0)
    for a, b in zip(plain.state_dict().values(), capped.state_dict().values()):
        assert torch.equal(a, b)


def test_transfer_sets_leave_out_the_validation_split_and_the_missing_classes() -> None:
    labels = torch.arange(1000) % 10
    keep, validation = anchors.transfer_set("no3", labels, 100)
    assert len(validation) == 100 and not set(keep.tolist()) & set(validation.tolist())
    assert (labels[keep] != 3).all() and len(keep) == 900 - 90
    assert (labels[validation] == 3).sum() == 10  # the validation split still has 3s
    keep78, _ = anchors.transfer_set("only78", labels, 100)
    assert set(labels[keep78].tolist()) == {7, 8}
    everything, none = anchors.transfer_set("hinton", labels, 100)
    assert len(everything) == 1000 and len(none) == 0


def test_the_bias_shift_is_chosen_on_the_validation_images_given() -> None:
    logits = torch.zeros(4, 10)
    logits[:, 5] = 2.1  # every image predicted as 5
    labels = torch.tensor([3, 3, 3, 5])
    logits[3, 3] = -5.0
    shift = anchors.best_shift(logits, labels, (3,), +1.0)
    assert shift == 2.25  # the smallest shift on the grid that turns the three 3s and keeps the 5
    assert anchors.best_shift(logits, torch.tensor([0, 0, 0, 0]), (5,), -1.0) == -2.25


def test_fidelity_is_perfect_for_the_teacher_itself_and_kl_is_positive_otherwise() -> None:
    teacher = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    same = fidelity(teacher, teacher)
    assert same["agreement"] == 1.0 and abs(same["kl"]) < 1e-6
    other = fidelity(-teacher, teacher)
    assert other["agreement"] < 0.2 and other["kl"] > 0


@pytest.mark.parametrize(("low", "high", "expected"), [
    (40.0, 60.0, "reproduced"), (10.0, 30.0, "same direction, smaller"),
    (-5.0, 30.0, "not reproduced"), (-30.0, -10.0, "not reproduced"), (60.0, 70.0, "reproduced")])
def test_the_verdict_rule_for_a_gain_where_higher_is_better(low, high, expected) -> None:
    assert anchors.verdict(49.0, low, high, null=0.0, higher_is_better=True) == expected


def test_the_verdict_rule_where_lower_is_better_and_without_an_interval() -> None:
    assert anchors.verdict(13.2, 10.0, 14.0, null=80.0, higher_is_better=False) == "reproduced"
    assert anchors.verdict(13.2, 30.0, 40.0, null=80.0, higher_is_better=False) == "same direction, smaller"
    assert anchors.verdict(13.2, 70.0, 85.0, null=80.0, higher_is_better=False) == "not reproduced"
    assert anchors.verdict(13.2, math.nan, math.nan, null=80.0, higher_is_better=False).startswith("one seed")
    assert anchors.verdict(90.0, 10.0, 14.0, null=80.0, higher_is_better=False).startswith("no verdict")


def test_row_ids_name_every_setting_and_unknown_parts_are_refused() -> None:
    run = anchors.AnchorRun("hinton", "kd", 1, 30)
    assert run.row_id() == "hinton/kd/h800-800/T20_w0.1/e30_b128_lr0.01/seed1"
    assert anchors.AnchorRun("no3", "nokd", 0, 30).row_id().startswith("no3/nokd/h800-800/T1_w1/")
    with pytest.raises(ValueError, match="part"):
        anchors.AnchorRun("no4", "kd", 0, 1)
    with pytest.raises(ValueError, match="unknown part"):
        anchors.run_anchors("quick", parts=("no4",))


def test_tiny_anchors_run_fills_every_table_and_resumes(tmp_path, monkeypatch, digits) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    tiny = anchors.AnchorScale(train_size=None, seeds=(0, 1), teacher_epochs=1, student_epochs=1,
                               validation_size=100, self_distillation=True)
    monkeypatch.setitem(anchors.SCALES, "quick", tiny)
    out = tmp_path / "anchors.json"
    data = anchors.run_anchors("quick", out=out, progress=False, dataset=digits, parts=anchors.MNIST_PARTS)
    planned = {run.row_id() for run in anchors.planned_runs(tiny, anchors.MNIST_PARTS)}
    assert planned | {"teacher"} == set(data["rows"])
    assert json.loads(out.read_text())["rows"].keys() == data["rows"].keys()
    row = data["rows"][anchors.AnchorRun("no3", "kd", 0, 1).row_id()]
    assert sum(row["margin_3"]) == int((digits.test_labels == 3).sum())
    assert {"agreement", "kl"} <= set(data["rows"][anchors.AnchorRun("hinton", "kd", 0, 1).row_id()]
                                       ["fidelity_test"])
    for table in (anchors.verdict_table(data), anchors.hinton_table(data), anchors.fidelity_table(data),
                  anchors.transfer_table(data, "no3"), anchors.transfer_table(data, "only78")):
        assert len(table) >= 2
    assert len(anchors.hinton_table(data)) == 4  # with the self-distilled student
    before = out.read_bytes()
    again = anchors.run_anchors("quick", out=out, progress=False, dataset=digits,
                                parts=anchors.MNIST_PARTS)  # nothing left to do
    assert again["rows"].keys() == data["rows"].keys()
    assert json.loads(before)["rows"] == json.loads(out.read_bytes())["rows"]


def test_the_command_line_refuses_inference_flags_for_anchors(capsys) -> None:
    from kdlib.experiments.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["anchors", "--inference-only"])
    assert exit_.value.code == 2
    assert "does not apply to anchors" in capsys.readouterr().err


def test_consistency_part_trains_each_teaching_and_keeps_the_other_runs_provenance(
        tmp_path, monkeypatch, cifar10) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KDLIB_THREADS", "1")
    tiny = anchors.AnchorScale(train_size=None, seeds=(0,), teacher_epochs=1, student_epochs=1,
                               validation_size=100, cifar_profile="quick", cifar_seeds=(0,), patience=(1,))
    monkeypatch.setitem(anchors.SCALES, "quick", tiny)
    out = tmp_path / "anchors.json"
    out.write_text(json.dumps({"experiment": "anchors", "provenance": {"profile": "quick", "scale": {},
                                                                         "first": "run"},
                               "rows": {"teacher": {"kind": "teacher", "errors": 1}}}))
    data = anchors.run_anchors("quick", out=out, progress=False, parts=("consistency",))
    on_disk = json.loads(out.read_text())
    assert {f"consistency/{t}/x1/seed0" for t in anchors.TEACHING} <= set(on_disk["rows"])
    assert "teacher" in on_disk["rows"] and "cifar_teacher" in on_disk["rows"]
    assert on_disk["provenance"]["first"] == "run" and "cifar_data_source" in on_disk["provenance"]
    assert len(on_disk["resumed"]) == 1 and data["rows"].keys() == on_disk["rows"].keys()
    with pytest.raises(ValueError, match="teaching"):
        anchors.ConsistencyRun("mixup", 1, 0)


def carried_files(tmp_path, **changes):
    """An earlier anchors file with consistency rows and a new one with MNIST rows only."""
    scale = {"cifar_profile": "full", "cifar_seeds": [0, 1, 2], "patience": [1, 2], "teacher_epochs": 40}
    provenance = {"profile": "full", "git_commit": "abc1234", "scale": scale,
                  "cifar_data_source": "the course mirror cifar10-jpeg.tgz"}
    old = {"experiment": "anchors", "provenance": provenance,
           "rows": {"teacher": {"errors": 102}, "cifar_teacher": {"accuracy": 0.8},
                    "consistency/nokd/x1/seed0": {"accuracy": 0.5}}}
    new_scale = {**scale, "teacher_epochs": 200, **changes}
    new = {"experiment": "anchors", "provenance": {"profile": "full", "git_commit": "def5678",
                                                   "scale": new_scale, "parts": ["hinton"]},
           "rows": {"teacher": {"errors": 75}}}
    source, out = tmp_path / "old.json", tmp_path / "new.json"
    source.write_text(json.dumps(old))
    out.write_text(json.dumps(new))
    return source, out


def test_consistency_rows_carry_over_with_their_provenance_and_nothing_else(tmp_path) -> None:
    source, out = carried_files(tmp_path)
    assert anchors.carry_over_consistency(source, out, "old.json at abc1234") == 2
    data = json.loads(out.read_text())
    assert data["rows"]["teacher"] == {"errors": 75}  # the MNIST rows stay the new run's
    assert set(data["rows"]) == {"teacher", "cifar_teacher", "consistency/nokd/x1/seed0"}
    carried = data["provenance"]["carried_over"]
    assert carried["provenance"]["git_commit"] == "abc1234" and carried["from"] == "old.json at abc1234"
    assert "consistency" in anchors.recorded_parts(data)
    with pytest.raises(Exception, match="already holds consistency rows"):
        anchors.carry_over_consistency(source, out, "again")


def test_consistency_rows_are_not_carried_over_a_change_of_their_settings(tmp_path) -> None:
    source, out = carried_files(tmp_path, patience=[1, 3])
    with pytest.raises(Exception, match="patience"):
        anchors.carry_over_consistency(source, out, "old")
    assert "cifar_teacher" not in json.loads(out.read_text())["rows"]


def schedule_row(kind: str, epochs: int, errors: int) -> tuple[str, dict]:
    run = anchors.AnchorRun("schedule", kind, 0, epochs)
    return run.row_id(), {"epochs": epochs, "validation_errors": errors}


def test_each_kind_trains_for_the_schedule_with_the_fewest_validation_errors() -> None:
    scale = anchors.AnchorScale(train_size=None, seeds=(0, 1), teacher_epochs=1, student_epochs=3,
                                validation_size=100, schedules=(2, 5, 9))
    rows = dict([schedule_row("kd", 2, 30), schedule_row("kd", 5, 20), schedule_row("kd", 9, 20),
                 schedule_row("nokd", 2, 25), schedule_row("nokd", 5, 26)])
    # kd: 5 and 9 tie, the shorter wins; nokd: its 9-epoch row is missing, so it is not chosen yet
    assert anchors.chosen_epochs(scale, rows) == {"kd": 5}
    planned = anchors.planned_runs(scale, ("hinton",), anchors.chosen_epochs(scale, rows))
    pair = [run for run in planned if run.part == "hinton" and run.hidden == (800, 800)]
    assert {(run.kind, run.epochs) for run in pair} == {("kd", 5)}  # and each seed
    assert len(pair) == 2
    rows.update([schedule_row("nokd", 9, 24)])
    assert anchors.chosen_epochs(scale, rows) == {"kd": 5, "nokd": 9}
    assert len([run for run in anchors.planned_runs(scale, ("hinton",), anchors.chosen_epochs(scale, rows))
                if run.part == "schedule"]) == 6
    without = replace(scale, schedules=())
    assert anchors.chosen_epochs(without, {}) == {"kd": 3, "nokd": 3}


def test_a_run_with_schedules_trains_the_pair_at_the_chosen_epochs(tmp_path, monkeypatch, digits) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    tiny = anchors.AnchorScale(train_size=None, seeds=(0, 1), teacher_epochs=1, student_epochs=1,
                               validation_size=100, self_distillation=False, schedules=(1, 2))
    monkeypatch.setitem(anchors.SCALES, "quick", tiny)
    data = anchors.run_anchors("quick", out=tmp_path / "a.json", progress=False, dataset=digits,
                               parts=("hinton",))
    chosen = anchors.chosen_epochs(tiny, data["rows"])
    assert set(chosen) == {"kd", "nokd"}
    schedule = [r for r in data["rows"].values() if r.get("part") == "schedule"]
    assert len(schedule) == 4 and all("errors" not in r for r in schedule)  # no test errors measured
    assert all(len(r["curve"]) == r["epochs"] and r["curve"][-1]["validation_errors"] == r["validation_errors"]
               for r in schedule)
    pair = anchors.student_frame(data).query("part == 'hinton'")
    assert len(pair) == 4 and all(pair.epochs == pair.kind.map(chosen))
    assert len(anchors.planned_frame(data)) == 8
    table = anchors.schedule_table(data)
    assert list(table.epochs) == [1, 2]
    assert sum(cell.endswith(" *") for cell in table["KD"]) == 1
    assert sum(cell.endswith(" *") for cell in table["labels only"]) == 1
    anchors.plot_schedules(data)


def test_an_earlier_teacher_of_the_same_recipe_is_noted_with_where_it_came_from(tmp_path) -> None:
    recipe = {"hidden": [1200, 1200], "config": {"epochs": 200}}
    old = {"experiment": "anchors", "provenance": {"git_commit": "abc1234", "scale": {"teacher": recipe},
                                                   "environment": {"torch_threads": 1, "cpu_count": 2}},
           "rows": {"teacher": {"errors": 75, "train_wall_s": 3051.0, "curve": [{"epoch": 1}]}}}
    new = {"experiment": "anchors", "provenance": {"scale": {"teacher": recipe}}, "rows": {"teacher": {"errors": 81}}}
    source, out = tmp_path / "old.json", tmp_path / "new.json"
    source.write_text(json.dumps(old))
    out.write_text(json.dumps(new))
    note = anchors.record_earlier_teacher(source, out, "old.json at abc1234")
    assert note["errors"] == 75 and note["torch_threads"] == 1 and note["from"] == "old.json at abc1234"
    data = json.loads(out.read_text())
    assert data["provenance"]["earlier_teachers"] == [note] and data["rows"]["teacher"] == {"errors": 81}
    other = {**new, "provenance": {"scale": {"teacher": {**recipe, "config": {"epochs": 40}}}}}
    out.write_text(json.dumps(other))
    with pytest.raises(Exception, match="another recipe"):
        anchors.record_earlier_teacher(source, out, "old")
    assert "earlier_teachers" not in json.loads(out.read_text())["provenance"]


def test_rows_carried_twice_keep_the_provenance_of_the_run_that_made_them(tmp_path) -> None:
    source, middle = carried_files(tmp_path)
    anchors.carry_over_consistency(source, middle, "old.json at abc1234")
    later = json.loads(middle.read_text())
    later["provenance"]["git_commit"] = "def5678"
    newest = tmp_path / "newest.json"
    newest.write_text(json.dumps({**later, "rows": {"teacher": {"errors": 81}},
                                  "provenance": {k: v for k, v in later["provenance"].items()
                                                 if k != "carried_over"}}))
    anchors.carry_over_consistency(middle, newest, "new.json at def5678")
    carried = json.loads(newest.read_text())["provenance"]["carried_over"]
    assert carried["provenance"]["git_commit"] == "abc1234"  # made there, not at def5678
    assert carried["from"] == "new.json at def5678, carried there from old.json at abc1234"
    assert len(carried["rows"]) == 2
    from kdlib.results import provenance_lines

    lines = provenance_lines({"provenance": {"command": "c", "git_commit": "x", "carried_over": carried,
                                             "environment": {"processor": "x86_64", "cpu_count": 2,
                                                             "torch_threads": 2, "torch": "t",
                                                             "numpy": "n", "python": "p"}},
                              "rows": {}})
    assert "carried:    2 rows made at abc1234, from new.json at def5678" in lines
    assert "            (carried there from old.json at abc1234)" in lines
