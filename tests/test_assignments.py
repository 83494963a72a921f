"""The autograded assignments (kdlib.course.assignments, `make assignments`): every chapter gets one,
the autograder gives the reference solutions full marks and each checker's typical mistake zero
on its question, and `otter run` grades a submission end to end, offline.

The tests of every chapter's autograder bundle run in this process on the reference solutions
(fast); `otter run`, which executes a submission in a fresh kernel, grades one chapter.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nbformat
import pytest

pytest.importorskip(
    "otter", reason="otter-grader is in requirements.txt: run `make setup`"
)

from kdlib.course import assignments  # noqa: E402
from kdlib.course.editions import chapter_paths, exercises  # noqa: E402

MISTAKES = {
    # label: code run after the reference answer, as a student's typical mistake
    "ex-test-mean": "test_mean = 255 * test_mean",  # forgot to divide by 255
    "ex-normalize": "def standardise(images):\n    return (images.float() - mnist.mean[0]) / mnist.std[0]",
    "ex-softened-softmax": "def softened_softmax(logits, T):\n    return torch.softmax(logits * T, dim=1)",
    "ex-which-scheme": 'answers = {**answers, "b": ("response", "offline")}',
    "ex-kd-gradient": "def kd_gradient(z, v, T):\n    return torch.softmax(z / T, 0) - torch.softmax(v / T, 0)",
    "ex-kd-loss": (
        "def kd_loss(s, t, T):\n    return T**2 * F.kl_div(F.log_softmax(s / T, 1), "
        'F.softmax(t / T, 1), reduction="mean")'
    ),
    "ex-no-t2": "factor = 16",  # 1/T instead of 1/T^2
    "ex-exact-variance": "var_empirical = 0.7 * 0.2**2 + 0.3 * 1.5**2",  # the second moment
    "ex-equality": "my_losses = np.array([[0.5, 1.0, 3.0]])",
    "ex-data-worth": "n_prime = 100 * v_bayes / v_emp",  # upside down
    "ex-crossover": "n_star = (v_e - v_t) / abs(bias)",  # the bias, not its square
    "ex-tau-knob": "best_tau = 1.0",  # no bias, but not the smallest E[Delta^2]
    "ex-flops": "flops = 784 * 300 + 300 * 10",  # multiply-adds, not FLOPs
    "ex-cifar-flops": "factor = 4",
    "ex-ece": (
        "def ece(probs, labels, bins=15):\n    confidence, predicted = probs.max(dim=1)\n"
        "    return abs((predicted == labels).float().mean() - confidence.mean()).item()"
    ),
    "ex-paired": "low, high = mean - half * 5**0.5, mean + half * 5**0.5",  # forgot / sqrt(n)
    "ex-fake-quant": "fake_quantized = 0.5",  # rounded, not clamped
    "ex-int8-size": "int8_bytes = 4 * (784 * 300 + 300 * 10)",  # the float32 size
    "ex-errors-removed": "removed_pct = 100 * (146 - 74) / 146",  # the paper's numbers
    "ex-bias-shift": "def choose_shift(logits, labels, shifts):\n    return max(shifts)",
    "ex-tckd": (  # the student's binary distribution as the target: KL the wrong way round
        "def tckd(s, t, y, T):\n"
        "    def b(z):\n"
        "        p = torch.softmax(z / T, 1).gather(1, y[:, None]).squeeze(1)\n"
        "        return torch.stack([p, 1 - p], 1)\n"
        "    return (b(s) * (b(s).log() - b(t).log())).sum(1)"
    ),
    "ex-inflation": "import math\n\ndef inflation(sigma, k):\n    return sigma * math.sqrt(2 * math.log(k)) if k > 1 else 0.0",
}

END_TO_END = "02_losses"
"""The chapter whose submissions `otter run` grades end to end (three autograded questions,
nothing to load)."""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("assignments") / "out"
    assignments.write_assignments(out)
    return out


def code_cells(notebook: Path) -> list[str]:
    """The Python source of a notebook's code cells, IPython magics turned into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    transform = TransformerManager().transform_cell
    return [
        transform(cell.source)
        for cell in nbformat.read(notebook, as_version=4).cells
        if cell.cell_type == "code" and not cell.source.startswith("grader.check")
    ]


def bundle_tests(bundle: Path) -> dict[str, object]:
    """The Otter test files of an autograder bundle, by question name."""
    from otter.test_files import ExceptionTestFile

    found = {}
    with (
        zipfile.ZipFile(bundle) as archive,
        __import__("tempfile").TemporaryDirectory() as tmp,
    ):
        for name in archive.namelist():
            if name.startswith("tests/") and name.endswith(".py"):
                path = Path(archive.extract(name, tmp))
                found[path.stem] = ExceptionTestFile.from_file(str(path))
    return found


def scores(env: dict, files: dict) -> dict[str, float]:
    result = {}
    for name, test_file in files.items():
        test_file.run(env)
        result[name] = test_file.score
    return result


def test_every_chapter_has_an_assignment(built: Path) -> None:
    for path in chapter_paths():
        folder = built / path.stem
        checked = [
            e
            for e in exercises(nbformat.read(path, as_version=4), path.stem)
            if e.checker
        ]
        student = (folder / "student" / path.name).read_text()
        assert (
            "BEGIN SOLUTION" not in student and "# END PROMPT" not in student
        ), path.name
        for exercise in checked:  # the student's cell is the starter, not the reference
            last_line = (
                assignments.REFERENCES[exercise.label].code.splitlines()[-1].strip()
            )
            assert json.dumps(last_line)[1:-1] not in student, (
                path.name,
                exercise.label,
            )
        files = bundle_tests(folder / "autograder" / f"{path.stem}-autograder.zip")
        assert sorted(files) == sorted(
            e.label.replace("-", "_") for e in checked
        ), path.name
        for exercise in checked:
            test_file = files[exercise.label.replace("-", "_")]
            assert test_file.possible == assignments.POINTS[exercise.difficulty]
            assert any(
                case.hidden for case in test_file.test_cases
            ) or exercise.checker in (
                "check_softened_softmax",
                "check_normalization",
                "check_kd_gradient",
                "check_kd_loss",
                "check_ece",
                "check_bias_shift",
                "check_tckd",
                "check_inflation",
            ), f"{exercise.label}: a value's checker test must be hidden"


def test_every_mistake_is_listed() -> None:
    labels = {
        e.label
        for p in chapter_paths()
        for e in exercises(nbformat.read(p, as_version=4), p.stem)
        if e.checker
    }
    assert set(MISTAKES) == labels == set(assignments.REFERENCES)


@pytest.mark.filterwarnings("ignore:reduction")
def test_reference_full_marks_and_mistakes_zero(built: Path, monkeypatch) -> None:
    """In this process, for every chapter: the reference solutions score every point; each
    typical mistake scores zero on its question and leaves the other questions' scores.
    """
    for path in chapter_paths():
        folder = built / path.stem
        monkeypatch.chdir(folder / "autograder")
        files = bundle_tests(folder / "autograder" / f"{path.stem}-autograder.zip")
        env: dict = {"__name__": "__main__"}
        for source in code_cells(assignments.solution_notebook(folder)):
            exec(
                compile(source, path.name, "exec"), env
            )  # noqa: S102 - the course's own notebook
        full = scores(env, files)
        assert full == {name: f.possible for name, f in files.items()}, path.name
        for question in assignments.questions(path):
            if not question.autograded:
                continue
            wrong = dict(env)
            exec(MISTAKES[question.label], wrong)  # noqa: S102
            got = scores(wrong, files)
            assert got == {**full, question.name: 0}, (path.name, question.label, got)


def test_otter_run_grades_a_submission(built: Path, tmp_path: Path) -> None:
    """`otter run` (no container, offline): full marks for the reference solutions, and zero on
    each question whose answer a submission gets wrong."""
    folder = built / END_TO_END
    bundle = folder / "autograder" / f"{END_TO_END}-autograder.zip"
    reference = assignments.solution_notebook(folder)
    assert assignments.grade(reference, bundle) == {
        "ex_kd_gradient": 2,
        "ex_kd_loss": 2,
        "ex_no_t2": 2,
    }
    notebook = nbformat.read(reference, as_version=4)
    for label in (
        "ex-kd-loss",
        "ex-no-t2",
    ):  # Otter grades a question at its check cell:
        name = label.replace(
            "-", "_"
        )  # the mistake goes into the answer cell before it
        check = next(
            i
            for i, cell in enumerate(notebook.cells)
            if cell.source.startswith(f'grader.check("{name}")')
        )
        notebook.cells[check - 1].source += "\n" + MISTAKES[label]
    wrong = tmp_path / f"{END_TO_END}.ipynb"
    nbformat.write(notebook, wrong)
    assert assignments.grade(wrong, bundle) == {
        "ex_kd_gradient": 2,
        "ex_kd_loss": 0,
        "ex_no_t2": 0,
    }


def test_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(
        assignments.AssignmentError, match="not written by kdlib.course.assignments"
    ):
        assignments.write_assignments(mine)
    assert (mine / "keep.txt").read_text() == "mine"
    with pytest.raises(
        assignments.AssignmentError, match="inside the course's sources"
    ):
        assignments.check_out(assignments.ROOT / "chapters" / "out")


def test_published_grading_times_cover_every_chapter() -> None:
    from kdlib.experiments import published_file

    data = json.loads(published_file("benchmark_grading.json").read_text())
    assert set(data["seconds_per_submission"]) == {p.stem for p in chapter_paths()}


# ------------------------------------------------------------------------------------------------
# The instructor's page: its outline, rubrics and tables (kdlib.course.instructor)


def test_outline_is_up_to_date() -> None:
    from kdlib.course import instructor

    assert instructor.load_outline() == instructor.outline(), (
        "results/course_outline.json differs from the chapters: run "
        "python -m kdlib.course.instructor outline (then python -m kdlib.experiments manifest)"
    )


def test_every_open_exercise_has_a_rubric_worth_its_points() -> None:
    from kdlib.course import instructor

    open_exercises = {
        e["label"]: e["points"]
        for c in instructor.outline().values()
        for e in c["exercises"]
        if not e["autograded"]
    }
    assert set(instructor.RUBRICS) == set(open_exercises)
    for label, points in open_exercises.items():
        assert sum(p for p, _ in instructor.RUBRICS[label]) == points, label


def test_instructor_tables_fit_a_phone() -> None:
    from kdlib.course import instructor

    chapters = instructor.outline()
    for table in (
        instructor.study_hours_table(chapters),
        instructor.module_plan_table(chapters),
        instructor.points_table(chapters),
        instructor.exercises_table(chapters),
        instructor.run_time_table(chapters),
    ):
        assert len(table.columns) <= 4, list(table.columns)
    assert all(
        c["objectives"] for c in chapters.values()
    ), "a chapter lists no learning objectives"
