"""Fault injection for the student-edition generator (issue 20, "data loss" and
"concurrency"): ``python -m kdlib.course.editions student --out DIR`` deleted ``DIR`` without looking
at it, and two runs at once crashed. Every case runs on a copy of the repository's book sources
in a temporary folder, never on the repository itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdlib.course import editions


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the generator reads, plus the other folders of a checkout."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("chapters", "book"):
        shutil.copytree(editions.ROOT / name, root / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy2(editions.ROOT / name, root / name)
    for name in ("kdlib", ".git"):
        (root / name).mkdir()
        (root / name / "keep.txt").write_text("not the generator's\n")
    return root


def run_cli(root: Path, out: str, monkeypatch, capsys, cwd: Path | None = None) -> tuple[int, str]:
    monkeypatch.setattr(editions, "ROOT", root)
    monkeypatch.chdir(cwd or root)
    code = editions.main(["student", "--out", out])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_student_notes_is_kept(repo, tmp_path, monkeypatch, capsys) -> None:
    notes = tmp_path / "my-notes"
    notes.mkdir()
    (notes / "lecture 3.md").write_text("my own notes\n")
    code, text = run_cli(repo, str(notes), monkeypatch, capsys)
    assert code == 2 and "error:" in text and ".kdlib-edition" in text and "Traceback" not in text
    assert (notes / "lecture 3.md").read_text() == "my own notes\n"
    with pytest.raises(editions.EditionError, match="did not write"):
        editions.build_student(notes, repo)


@pytest.mark.parametrize("inside", ["chapters", "kdlib", "book", ".git", "chapters/new", "."])
def test_the_sources_are_refused(inside, repo, monkeypatch, capsys) -> None:
    before = snapshot(repo)
    code, text = run_cli(repo, inside, monkeypatch, capsys)
    assert code == 2 and "error:" in text and "Traceback" not in text, text
    assert snapshot(repo) == before  # nothing deleted, nothing written


def test_an_ancestor_of_the_repository_is_refused(repo, tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "edition-from-before").mkdir()  # not empty either way; the check names the repository
    code, text = run_cli(repo, str(tmp_path), monkeypatch, capsys)
    assert code == 2 and "contains it" in text
    assert (repo / "chapters").is_dir() and (repo / ".git" / "keep.txt").is_file()


def test_files_and_links_are_refused(repo, tmp_path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "link", tmp_path / "file"):
        with pytest.raises(editions.EditionError):
            editions.build_student(out, repo)
    assert (tmp_path / "file").read_text() == "x" and (tmp_path / "link").is_symlink()


def test_its_own_editions_are_replaced(repo, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "build" / "student"
    code, _ = run_cli(repo, str(out), monkeypatch, capsys)
    assert code == 0 and (out / editions.MARKER).is_file()
    (out / "chapters" / "stale.ipynb").write_text("{}")
    code, _ = run_cli(repo, str(out), monkeypatch, capsys)
    assert code == 0 and not (out / "chapters" / "stale.ipynb").exists()
    assert {p.name for p in out.parent.iterdir()} - {".student.lock"} == {"student"}  # no leftovers
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(editions.build_student(empty, repo)) == len(editions.chapter_paths(repo))


def test_a_folder_that_only_looks_like_an_edition_keeps_a_students_notebook(repo, tmp_path) -> None:
    """Without the marker, a folder with an edition's names and title is not kdlib's: the
    student's own notebook in it survives (it used to be deleted as an 'old edition')."""
    out = tmp_path / "student"
    editions.build_student(out, repo)
    (out / editions.MARKER).unlink()
    mine = out / "chapters" / "my_work.ipynb"
    mine.write_text("{}")
    with pytest.raises(editions.EditionError, match="did not write"):
        editions.build_student(out, repo)
    assert mine.read_text() == "{}"


def test_a_malformed_chapter_gets_a_one_line_message(repo, tmp_path, monkeypatch, capsys) -> None:
    (repo / "chapters" / "00_setup_and_data.ipynb").write_text("{not json")
    code, text = run_cli(repo, str(tmp_path / "student"), monkeypatch, capsys)
    assert code == 2 and "not a valid notebook" in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1


def test_an_os_error_gets_a_one_line_message(repo, tmp_path, monkeypatch, capsys) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(editions.nbformat, "write", full_disk)
    code, text = run_cli(repo, str(tmp_path / "student"), monkeypatch, capsys)
    assert code == 2 and "No space left on device" in text and "Traceback" not in text
    assert not (tmp_path / "student").exists()  # nothing half-written is left in its place


BUILD = """
import sys, time
from pathlib import Path
from kdlib.course import editions
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
editions.build_student(Path(sys.argv[2]), Path(sys.argv[3]))
"""


def test_runs_at_the_same_time_all_succeed(repo, tmp_path) -> None:
    """Two ``make student`` at once crashed 8 times in 10; four runs started at the same instant
    must all succeed and leave one complete edition."""
    out = tmp_path / "build" / "student"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for round_ in range(2):
        start = time.time() + 4.0
        runs = [subprocess.Popen([sys.executable, "-c", BUILD, str(start), str(out), str(repo)],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for _ in range(4)]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0] * 4, (round_, outputs)
        names = sorted(p.name for p in (out / "chapters").iterdir())
        assert names == [p.name for p in editions.chapter_paths(repo)]
        assert (out / editions.MARKER).is_file() and (out / "_config.yml").is_file()
        assert {p.name for p in out.parent.iterdir()} - {".student.lock"} == {"student"}


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(repo, tmp_path) -> None:
    out = tmp_path / "student"
    ours = tmp_path / ".student.tmp-abc123"  # a run killed mid-way left its temporary folder
    ours.mkdir()
    (ours / editions.MARKER).write_text(editions.MARKER_TEXT)
    (ours / "chapters").mkdir()
    theirs = tmp_path / ".student.tmp-xyz789"  # the same kind of name, but not ours
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    editions.build_student(out, repo)
    assert not ours.exists()
    assert (theirs / "notes.txt").read_text() == "mine\n"


def test_a_cached_teacher_counts_once_for_its_chapter() -> None:
    """Two files of one chapter that read the same cached teacher: its training time counts once,
    beside the files' wall times; a file that trained everything itself counts its wall time."""
    from kdlib.course.editions import experiment_minutes

    env = {"provenance": {"environment": {"cpu_count": 2, "cuda_device": None}}}
    teacher = {"kind": "teacher", "recipe": "r", "seed": 0, "train_wall_s": 1800.0}
    files = {"cifar10_full.json": {**env, "wall_s": 600.0, "rows": {"t": {"kind": "teacher",
                                                                          "train_wall_s": 60.0}}},
             "cifar10_fast_full.json": {**env, "wall_s": 3000.0,
                                        "rows": {"t": teacher, "s": {"train_wall_s": 2400.0}}},
             "cifar10_large_full.json": {**env, "wall_s": 1200.0,
                                         "rows": {"t": {**teacher, "train_wall_s": 2000.0},
                                                  "s": {"train_wall_s": 1500.0}}}}
    minutes, where = experiment_minutes("06_cifar10", files.__getitem__)
    assert where == "2-core CPU"
    # 10 (all its own) + 50 + 25 (the students' 25 exceed the wall's 20) + the teacher once, 30
    assert minutes == 10 + 50 + 25 + 30
    assert experiment_minutes("03_lemma1", files.__getitem__) is None
