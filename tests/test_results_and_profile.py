"""kdlib.results (atomic, resumable result files) and kdlib.profile (the scale switch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlib.profile import check_profile, current_profile
from kdlib.results import ResultFile, atomic_write_json, editing, load_results, new_provenance


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_result_file_resumes_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    first = ResultFile(path, "demo", new_provenance("cmd"))
    first.put("row1", {"accuracy": 0.9})
    second = ResultFile(path, "demo", new_provenance("cmd again"))
    assert second.has("row1") and not second.has("row2")
    assert second.get("row1") == {"accuracy": 0.9}
    second.put("row2", {"accuracy": 0.8})
    stored = load_results(path)
    assert stored["provenance"]["command"] == "cmd"
    assert stored["resumed"][0]["command"] == "cmd again"
    assert list(stored["rows"]) == ["row1", "row2"]
    for key in ("git_commit", "environment", "started_utc"):
        assert key in stored["provenance"]


def test_result_file_refuses_another_experiment_and_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    ResultFile(path, "demo", {}).put("x", {})
    with pytest.raises(ValueError, match="holds experiment 'demo'"):
        ResultFile(path, "other", {})
    path.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        ResultFile(path, "demo", {})


def test_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDLIB_PROFILE", "FULL")
    assert current_profile() == "full"
    monkeypatch.delenv("KDLIB_PROFILE")
    assert current_profile() == "quick"
    with pytest.raises(ValueError, match="unknown profile 'huge'.*quick, full, paper"):
        check_profile("huge")


def test_wall_time_is_saved_with_every_row(tmp_path) -> None:
    import time as clock

    from kdlib.results import ResultFile

    path = tmp_path / "r.json"
    first = ResultFile(path, "exp", {})
    clock.sleep(0.05)
    first.put("a", {})
    saved = json.loads(path.read_text())["wall_s"]
    assert saved >= 0.05  # kept even if the run is killed now
    second = ResultFile(path, "exp", {})
    second.put("b", {})
    assert json.loads(path.read_text())["wall_s"] >= saved  # a resumed run adds its own time


def test_provenance_lines_name_the_machine_and_resumed_commits() -> None:
    from kdlib.results import provenance_lines

    env = {"processor": "x86_64", "cpu_count": 2, "torch_threads": 1, "torch": "2", "numpy": "2",
           "python": "3.11", "cuda_device": None}
    data = {"provenance": {"command": "c", "git_commit": "abc", "environment": env, "device": "cpu",
                           "data_source": "original MNIST IDX files (md5-verified) from /x"},
            "resumed": [{"git_commit": "1234567890"}, {"git_commit": "abcdef0123+dirty"}],
            "rows": {"a": {}}, "wall_s": 120.0}
    lines = provenance_lines(data)
    assert "resumed at 1234567, abcdef0+dirty)" in lines[1] and "2 cores" in lines[2]
    assert lines[4] == "data:       original MNIST IDX files"
    assert lines[-2].endswith("their training time 0 min")  # no teacher row: no share named
    assert lines[-1] == "wall time:  2 min, the runs that wrote the file"

    data["rows"] = {"teacher": {"kind": "teacher", "train_wall_s": 600.0}, "s": {"train_wall_s": 300.0}}
    assert provenance_lines(data)[-2].endswith("time 15 min, the teacher's 10 of it")
    data["rows"]["cifar_teacher"] = {"kind": "cifar_teacher", "train_wall_s": 120.0}
    assert provenance_lines(data)[-2].endswith("time 17 min, the 2 teachers' 12 of it")
    data["rows"]["teacher"]["weights_sha256"] = "abc"  # the same network in a second row: once
    data["rows"]["copy"] = {"kind": "teacher", "train_wall_s": 600.0, "weights_sha256": "abc"}
    assert provenance_lines(data)[-2].endswith("time 17 min, the 2 teachers' 12 of it")
    data["rows"]["untimed"] = {"kind": "teacher"}
    assert provenance_lines(data)[-2].endswith("the 3 teachers' 12 of it (1 not recorded)")
    data["rows"] = {"teacher": {"kind": "teacher"}, "s": {"train_wall_s": 60.0}}
    assert provenance_lines(data)[-2].endswith("time 1 min; the teacher's not recorded")
    # QAT rows record the float student they start from, trained again once for all bit widths
    data["rows"].update({"q8": {"train_wall_s": 60.0, "float_train_wall_s": 240.0},
                         "q4": {"train_wall_s": 60.0, "float_train_wall_s": 240.0},
                         "q2": {"train_wall_s": 0.0, "float_train_wall_s": 120.0}})
    lines = provenance_lines(data)
    assert lines[-3].endswith("time 9 min; the teacher's not recorded")
    assert lines[-2] == "            (with 2 float students trained again for QAT, 6 min)"
    del data["wall_s"]
    assert provenance_lines(data)[-1].startswith("            (with 2")


def test_a_resumed_run_records_into_its_own_provenance(tmp_path) -> None:
    path = tmp_path / "r.json"
    first = ResultFile(path, "exp", {"environment": {"torch_threads": 2}})
    first.put("a", {"x": 1})
    again = ResultFile(path, "exp", {"environment": {"torch_threads": 2}})
    again.run_provenance["environment"]["torch_threads"] = 1
    again.put("b", {"x": 2})
    data = json.loads(path.read_text())
    assert data["provenance"]["environment"]["torch_threads"] == 2  # the first run's, untouched
    assert data["resumed"][-1]["environment"]["torch_threads"] == 1


def test_editing_writes_on_success_and_nothing_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    results = ResultFile(path, "exp", new_provenance(command="x"))
    results.put("a", {"accuracy": 0.5})
    with editing(path) as data:
        data["rows"]["b"] = {"accuracy": 0.25}
    assert set(load_results(path)["rows"]) == {"a", "b"}
    with pytest.raises(RuntimeError):
        with editing(path) as data:
            data["rows"].clear()
            raise RuntimeError("a check failed half way")
    assert set(load_results(path)["rows"]) == {"a", "b"}
    assert (tmp_path / "r.json.lock").exists()  # the lock ResultFile.save takes
    with pytest.raises(FileNotFoundError):
        with editing(tmp_path / "missing.json"):
            pass
    assert not (tmp_path / "missing.json.lock").exists()
