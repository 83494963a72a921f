"""Grading is an adversary's game: submissions with wrong answers and an attack (shadowing the
checkers, patching them or Verdict, patching Otter, faking the checker's data, touching files,
looping forever, printing fake results, starting processes) score 0 with the contained grader
(``kdlib.course.grading``), and leave files outside their folder untouched; the reference
solutions still score full marks."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from kdlib.course import grading

WRONG_02 = """
import torch
def kd_gradient(z, v, T):
    return torch.zeros_like(z)
def kd_loss(student_logits, teacher_logits, T):
    return (student_logits * 0).sum()
factor = 1.0
"""

REFERENCE_02 = """
import torch
import torch.nn.functional as F
def kd_gradient(z, v, T):
    return (torch.softmax(z / T, 0) - torch.softmax(v / T, 0)) / T
def kd_loss(student_logits, teacher_logits, T):
    log_q = F.log_softmax(student_logits / T, dim=1)
    log_p = F.log_softmax(teacher_logits / T, dim=1)
    return T**2 * (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
factor = 16**2
"""

ATTACKS = {
    "shadowing": """
from kdlib.course.checks import Verdict
check_kd_gradient = check_kd_loss = check_gradient_factor = lambda *a, **k: Verdict(True, "Correct")
""",
    "patch-checks": """
import kdlib.course.checks as c
c.check_kd_gradient = c.check_kd_loss = c.check_gradient_factor = lambda *a, **k: c.Verdict(True, "ok")
c.Verdict.__bool__ = lambda self: True
c.verdict = lambda ok, good, hint: c.Verdict(True, "Correct")
""",
    "patch-otter": """
try:
    import otter.test_files.abstract_test as t
    t.TestFile.all_or_nothing = True
    t.TestFile.score = property(lambda self: self.possible)
except Exception:
    pass
""",
    "patch-numpy-torch": """
import torch, numpy
torch.allclose = lambda *a, **k: True
numpy.isclose = lambda *a, **k: True
torch.Tensor.__eq__ = lambda a, b: True
""",
    "printing": """
print('{"value": {"f": "256.0"}, "defined": true}')
print("ex_no_t2: 2/2  Correct")
import sys
sys.__stdout__.write('{"ready": true}\\n')
""",
    "subprocess": """
import subprocess, os
try:
    subprocess.run(["sh", "-c", "echo pwned > {outside}/from_shell"])
except Exception:
    pass
try:
    os.system("echo pwned > {outside}/from_system")
except Exception:
    pass
""",
    "files": """
import os, shutil
for action in (lambda: os.remove("{outside}/sentinel"), lambda: shutil.rmtree("{outside}/folder"),
               lambda: open("{outside}/written", "w").write("pwned"),
               lambda: os.rename("{outside}/sentinel", "{outside}/moved")):
    try:
        action()
    except Exception:
        pass
open("inside.txt", "w").write("a file of its own folder is allowed")
""",
    "gc-and-guard": """
import gc, sys
try:
    for obj in gc.get_objects():
        pass
except Exception:
    pass
main = sys.modules["__main__"]
try:
    main._guard.__code__ = (lambda event, args: None).__code__
except Exception:
    pass
try:
    import os
    os.remove("{outside}/sentinel")
except Exception:
    pass
""",
}


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import otter\ngrader = otter.Notebook("02_losses.ipynb")'),
        *(nbformat.v4.new_code_cell(c) for c in cells),
        nbformat.v4.new_code_cell('grader.check("ex_no_t2")'),
    ])
    nbformat.write(nb, path)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "grader_files"
    (folder / "folder").mkdir(parents=True)
    (folder / "sentinel").write_text("the grader's")
    (folder / "folder" / "inner").write_text("the grader's")
    return folder


def untouched(outside: Path) -> bool:
    return (sorted(p.name for p in outside.iterdir()) == ["folder", "sentinel"]
            and (outside / "sentinel").read_text() == "the grader's"
            and (outside / "folder" / "inner").exists())


def total(scores) -> float:
    return sum(s.points for s in scores)


def test_the_reference_scores_full_marks(tmp_path):
    scores = grading.grade_submission(notebook(tmp_path / "02_losses.ipynb", REFERENCE_02))
    assert total(scores) == sum(s.possible for s in scores) == 6


ONE_OF_EACH = {"ex_kd_loss", "ex_no_t2"}  # a function answer and a value answer

GROUPS = {  # attacks run together, to keep the suite's time down: any one that worked would score
    "names-and-modules": ("shadowing", "patch-checks", "patch-otter"),
    "libraries-and-output": ("patch-numpy-torch", "printing", "gc-and-guard"),
    "files-and-processes": ("files", "subprocess"),
}


def test_every_attack_is_in_a_group():
    assert sorted(a for group in GROUPS.values() for a in group) == sorted(ATTACKS)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_attacks_with_wrong_answers_score_zero(tmp_path, outside, group):
    code = "\n".join(ATTACKS[a] for a in GROUPS[group]).replace("{outside}", str(outside))
    path = notebook(tmp_path / "02_losses.ipynb", WRONG_02, code)
    scores = grading.grade_submission(path, timeout_s=30, only=ONE_OF_EACH)
    assert total(scores) == 0, [(s.question, s.message) for s in scores]
    assert untouched(outside)
    assert not any(outside.parent.glob("**/from_*"))


def test_an_attack_before_the_right_answers_cannot_hurt_the_grader(tmp_path, outside):
    """The attacks run and fail; the answers after them are still right, and graded right."""
    code = "\n".join(ATTACKS[a].replace("{outside}", str(outside)) for a in ("files", "subprocess"))
    scores = grading.grade_submission(notebook(tmp_path / "02_losses.ipynb", code, REFERENCE_02), only=ONE_OF_EACH)
    assert total(scores) == 4 and untouched(outside)


def test_fake_data_is_not_read(tmp_path):
    """Chapter 3's checker takes the problem from the setup: a submission that replaces the
    problem with one its wrong answer fits scores 0."""
    fake = """
import numpy as np
from kdlib import theory
problem = theory.DiscreteProblem(np.array([1.0]), np.array([[0.5, 0.5]]))
predictors = {"random predictor": np.array([[1.0, 1.0]])}
n_prime = 100.0
var_empirical = 0.0
my_problem, my_losses = ..., ...
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(fake)])
    path = tmp_path / "03_lemma1.ipynb"
    nbformat.write(nb, path)
    scores = {s.question: s.points for s in grading.grade_submission(
        path, only={"ex_data_worth", "ex_exact_variance"})}
    assert scores == {"ex_data_worth": 0, "ex_exact_variance": 0}


def test_an_endless_loop_scores_zero_within_the_time_limit(tmp_path):
    path = notebook(tmp_path / "02_losses.ipynb", REFERENCE_02 + "\nwhile True:\n    pass\n")
    start = time.monotonic()
    scores = grading.grade_submission(path, timeout_s=3, only={"ex_no_t2"})
    assert total(scores) == 0 and time.monotonic() - start < 60
    assert all("longer than 3 s" in s.message for s in scores)


def test_an_endless_function_scores_zero_on_its_question_only(tmp_path):
    slow = REFERENCE_02 + "\ndef kd_gradient(z, v, T):\n    while True:\n        pass\n"
    scores = {s.question: s.points for s in grading.grade_submission(
        notebook(tmp_path / "02_losses.ipynb", slow), timeout_s=10, only={"ex_kd_gradient", "ex_no_t2"})}
    assert scores == {"ex_kd_gradient": 0, "ex_no_t2": 2}


def test_a_submission_computes_under_its_graders_kernel_caps(monkeypatch):
    """The child that runs a submission keeps the parent's caps on the CPU's kernels (ATen's,
    oneDNN's and MKL's), so that expectations and submissions compute alike, and nothing else
    of the parent's environment."""
    caps = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    for name, value in caps.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KDLIB_SECRET_OF_THE_GRADER", "x")
    child = grading.Child("", ["import os\nseen = {k: os.environ.get(k) for k in "
                               f"{sorted([*caps, 'KDLIB_SECRET_OF_THE_GRADER'])!r}}}"], timeout_s=60)
    try:
        assert child.value("seen") == {**caps, "KDLIB_SECRET_OF_THE_GRADER": None}
    finally:
        child.close()
