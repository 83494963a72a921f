"""Autograded assignments: one Otter-Grader assignment per chapter, from its tagged exercises.

For each chapter, :func:`master_notebook` writes a master notebook in the format of
``otter assign`` (Otter-Grader 7): a setup cell, then one question per exercise of the chapter,
in the chapter's order.

* An exercise whose starter calls a checker of :mod:`kdlib.course.checks` becomes an autograded
  question. Its tests are derived from that checker call: a visible test that the answer is
  filled in, and a test that runs the checker itself. The checker test is *hidden* when the
  answer is a value (a number, a problem, a dictionary: the checker's message on failure would
  give the value away), and visible when the answer is a function (the checker then only shows
  what the function gets wrong). A question scores its points only when all its tests pass.
* An open exercise (no checker) becomes a manually graded question with a Markdown answer
  cell; the rubrics are on the book's instructor page.
* Points follow the difficulty: :data:`POINTS`.

The student's cell is the chapter's starter; the reference answer is :data:`REFERENCES`
(short code that works with the assignment's setup cell, :data:`SETUP`, rather than the whole
chapter, so that grading a submission takes seconds, not a chapter's run time).

    python -m kdlib.course.assignments --out _build/assignments       # what `make assignments` runs

writes, per chapter, the master notebook ``<chapter>/<chapter>.ipynb`` and what ``otter assign`` makes of it:
``<chapter>/student/<chapter>.ipynb`` (hand it out) and
``<chapter>/autograder/autograder.zip`` (upload it to Gradescope, or grade locally with
``otter run -a autograder.zip submission.ipynb``). Otter runs the tests inside the submission's
kernel, so a submission that patches Otter decides its own score there: grade untrusted work
with the contained grader, :mod:`kdlib.course.grading`, which never runs the submission's code
in the process that scores it.

    python -m kdlib.course.assignments benchmark   # results/benchmark_grading.json: seconds per submission

The output folder is replaced only if this module wrote it (it holds the marker
:data:`MARKER`); a folder of anything else is refused, never deleted.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from kdlib.course import release
from kdlib.course.grading import checker_context
from kdlib.course.editions import (
    EXERCISE,
    ROOT,
    STARTER,
    PlainMarkdown,
    chapter_paths,
    exercises,
    rewrite_wording,
    tags,
)

POINTS = {"easy": 1, "medium": 2, "hard": 3}
"""Points of a question by the exercise's difficulty."""

MARKER = ".kdlib-assignments"
"""The file that marks a folder written by this module: only such a folder is ever replaced."""

COLAB_SETUP = f"""\
# On Colab only: install kdlib and Otter-Grader (Colab already has torch and torchvision).
import sys

if "google.colab" in sys.modules:
    %pip install -q otter-grader "{release.requirement()}"
"""

SETUP: dict[str, str] = {
    "00_setup_and_data": "from kdlib.data import load_mnist\n\nmnist = load_mnist()",
    "01_framework": "import torch",
    "02_losses": "import torch\nimport torch.nn.functional as F",
    "03_lemma1": """\
import numpy as np

from kdlib import theory

problem = theory.DiscreteProblem.random(num_x=8, num_labels=3, concentration=1.0, seed=0)
rng = np.random.default_rng(1)
predictors = {"random predictor": theory.log_loss_vectors(rng.normal(size=problem.bayes.shape))}""",
    "04_lemma2": """\
import numpy as np

from kdlib import theory

problem = theory.DiscreteProblem.random(num_x=8, num_labels=3, concentration=1.0, seed=0)
rng = np.random.default_rng(1)
losses = theory.log_loss_vectors(rng.normal(size=problem.bayes.shape))
teachers = {"tempered (tau = 2)": theory.tempered_teacher(problem.bayes, 2.0)}""",
    "05_mnist": "import torch",
    "06_cifar10": "import torch",
    "07_regimes": "import torch",
    "08_algorithms": "import torch",
    "09_landmarks": "import torch",
    "10_modern": "import numpy as np\nimport torch",
}
"""The setup cell of each chapter's assignment: what its checked starters use (the same
objects the chapter builds: the same seeds, the same problem)."""


@dataclass(frozen=True)
class Reference:
    """The reference answer of a checked exercise, and, where the chapter's starter passes its
    answer straight to the checker, a starter that names it."""

    code: str
    starter: str | None = None


REFERENCES: dict[str, Reference] = {
    "ex-test-mean": Reference(
        "test_mean = (mnist.test_images.float() / 255).mean().item()"
    ),
    "ex-normalize": Reference(
        "def standardise(images):\n    return (images.float() / 255 - mnist.mean[0]) / mnist.std[0]"
    ),
    "ex-softened-softmax": Reference(
        "def softened_softmax(logits, T):\n    return torch.softmax(logits / T, dim=1)"
    ),
    "ex-which-scheme": Reference(
        'answers = {"a": ("response", "offline"), "b": ("response", "online"),\n'
        '           "c": ("feature", "offline")}'
    ),
    "ex-kd-gradient": Reference(
        "def kd_gradient(z, v, T):\n"
        "    return (torch.softmax(z / T, 0) - torch.softmax(v / T, 0)) / T"
    ),
    "ex-kd-loss": Reference(
        "def kd_loss(student_logits, teacher_logits, T):\n"
        "    log_q = F.log_softmax(student_logits / T, dim=1)\n"
        "    log_p = F.log_softmax(teacher_logits / T, dim=1)\n"
        "    return T**2 * (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()"
    ),
    "ex-no-t2": Reference("factor = 16**2"),
    "ex-exact-variance": Reference(
        "var_empirical = 0.7 * 0.2**2 + 0.3 * 1.5**2 - 0.59**2"
    ),
    "ex-equality": Reference(
        "my_problem = theory.DiscreteProblem(np.array([1.0]), np.array([[0.5, 0.5, 0.0]]))\n"
        "my_losses = theory.log_loss_vectors(np.array([[0.0, 0.0, 3.0]]))"
    ),
    "ex-data-worth": Reference(
        'random_losses = predictors["random predictor"]\n'
        "v_emp = theory.exact_moments(problem, random_losses, None).variance\n"
        "v_bayes = theory.exact_moments(problem, random_losses, problem.bayes).variance\n"
        "n_prime = 100 * v_emp / v_bayes"
    ),
    "ex-crossover": Reference(
        'teacher = teachers["tempered (tau = 2)"]\n'
        "v_e = theory.exact_moments(problem, losses, None).variance\n"
        "v_t = theory.exact_moments(problem, losses, teacher).variance\n"
        "bias = problem.marginal @ ((teacher - problem.bayes) * losses).sum(1)\n"
        "n_star = (v_e - v_t) / bias**2"
    ),
    "ex-tau-knob": Reference(
        "best_tau = min((0.5, 1.0, 2.0, 4.0), key=lambda t: theory.lemma2_terms(\n"
        "    problem, losses, theory.tempered_teacher(problem.bayes, t), n=30).mse)"
    ),
    "ex-flops": Reference("flops = 2 * (784 * 300 + 300 * 10)"),
    "ex-cifar-flops": Reference(
        "from kdlib.bench import count_flops\nfrom kdlib.models import cifar_resnet\n\n"
        "x = torch.zeros(1, 3, 32, 32)\n"
        "factor = count_flops(cifar_resnet((1, 1, 1, 1), stride=1), x) / count_flops(\n"
        "    cifar_resnet((1, 1, 1, 1), stride=2), x)"
    ),
    "ex-ece": Reference(
        "def ece(probs, labels, bins=15):\n"
        "    confidence, predicted = probs.max(dim=1)\n"
        "    index = torch.clamp((confidence * bins).long(), max=bins - 1)\n"
        "    total = 0.0\n"
        "    for b in range(bins):\n"
        "        mask = index == b\n"
        "        if mask.any():\n"
        "            gap = (predicted[mask] == labels[mask]).float().mean() - confidence[mask].mean()\n"
        "            total += mask.float().mean().item() * abs(gap.item())\n"
        "    return total"
    ),
    "ex-paired": Reference(
        "from scipy import stats\n\n"
        "diffs = [a - b for a, b in zip([95.1, 95.4, 94.9, 95.3, 95.0],\n"
        "                               [89.8, 90.2, 89.5, 90.1, 89.6])]\n"
        "mean = sum(diffs) / 5\n"
        "half = stats.t.ppf(0.975, 4) * (sum((d - mean) ** 2 for d in diffs) / 4) ** 0.5 / 5**0.5\n"
        "low, high = mean - half, mean + half"
    ),
    "ex-fake-quant": Reference(
        "fake_quantized = 7 * 0.05",
        "from kdlib.course.checks import check_fake_quantized\n\n"
        "fake_quantized = ...  # your value\ncheck_fake_quantized(fake_quantized)",
    ),
    "ex-errors-removed": Reference(
        "from kdlib.experiments import anchors\n\n"
        "frame = anchors.student_frame(anchors.load_published())\n"
        'alone = anchors.by_seed(frame, "hinton", "nokd", "errors").mean()\n'
        'distilled = anchors.by_seed(frame, "hinton", "kd", "errors").mean()\n'
        "removed_pct = 100 * (alone - distilled) / alone"
    ),
    "ex-bias-shift": Reference(
        "def choose_shift(logits, labels, shifts):\n"
        "    def errors(shift):\n"
        "        moved = logits.clone()\n"
        "        moved[:, 3] += shift\n"
        "        return int((moved.argmax(1) != labels).sum())\n\n"
        "    return min(shifts, key=lambda s: (errors(s), s))"
    ),
    "ex-tckd": Reference(
        "def tckd(student_logits, teacher_logits, labels, T):\n"
        "    def binary(logits):\n"
        "        p = torch.softmax(logits / T, dim=1).gather(1, labels[:, None]).squeeze(1)\n"
        "        return torch.stack([p, 1 - p], dim=1)\n\n"
        "    b_s, b_t = binary(student_logits), binary(teacher_logits)\n"
        "    return (b_t * (b_t.log() - b_s.log())).sum(dim=1)"
    ),
    "ex-inflation": Reference(
        "def inflation(sigma, k, draws=200_000):\n"
        "    rng = np.random.default_rng(0)\n"
        "    return float(rng.normal(0.0, sigma, size=(draws, k)).max(axis=1).mean())"
    ),
    "ex-int8-size": Reference(
        "int8_bytes = 784 * 300 + 300 * 10",
        "from kdlib.course.checks import check_int8_size\n\n"
        "int8_bytes = ...  # your prediction, in bytes\ncheck_int8_size(int8_bytes)",
    ),
}
"""The reference answer of every checked exercise, by its label."""


class AssignmentError(Exception):
    """A refusal: the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Question:
    """One question of an assignment."""

    chapter: str
    label: str
    title: str
    difficulty: str
    checker: str | None
    points: int
    prompt: str  # plain Markdown
    starter: str  # the student's cell
    answers: tuple[str, ...]  # names the starter asks for
    is_function: bool  # the answer is a function (its checker test is visible)
    call: (
        str | None
    )  # the checker call of the starter, e.g. "check_flops(flops, hidden=300)"

    @property
    def name(self) -> str:
        """The question's name in Otter (a Python identifier)."""
        return self.label.replace("-", "_")

    @property
    def autograded(self) -> bool:
        return self.checker is not None


def checker_call(source: str) -> tuple[str, tuple[str, ...], bool]:
    """The last ``check_...(...)`` call of a starter, the names the starter assigns ``...`` to
    or defines as functions, and whether the answer is a function."""
    tree = ast.parse(source)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("check_")
    ]
    if not calls:
        raise AssignmentError(f"no checker call in the starter {source[:80]!r}")
    call = ast.get_source_segment(source, max(calls, key=lambda c: c.lineno))
    names: list[str] = []
    is_function = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.append(node.name)
            is_function = True
        elif is_answer(node):
            for target in node.targets:
                names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return call, tuple(names), is_function


def questions(path: Path, plain: PlainMarkdown | None = None) -> list[Question]:
    """The questions of the chapter notebook at ``path``, in the chapter's order."""
    notebook = nbformat.read(path, as_version=4)
    plain = plain or PlainMarkdown()
    cells = {}
    for i, cell in enumerate(notebook.cells):
        if EXERCISE in tags(cell):
            cells[i] = (cell, notebook.cells[i + 1])
    found = []
    for exercise, (cell, starter_cell) in zip(
        exercises(notebook, path.stem), cells.values()
    ):
        assert STARTER in tags(starter_cell)
        prompt = plain.markdown(cell.source, 2)
        call, answers, is_function = None, (), False
        starter = rewrite_wording(starter_cell.source)
        if exercise.checker is not None:
            reference = REFERENCES.get(exercise.label)
            if reference is None:
                raise AssignmentError(
                    f"{path.name}: exercise {exercise.label} has a checker but no "
                    "reference answer: add one to kdlib.course.assignments.REFERENCES"
                )
            starter = reference.starter or starter
            call, answers, is_function = checker_call(starter)
            if not answers:
                raise AssignmentError(
                    f"{path.name}: the starter of {exercise.label} names no answer "
                    "(give it a starter in REFERENCES that assigns one)"
                )
        found.append(
            Question(
                path.stem,
                exercise.label,
                exercise.title,
                exercise.difficulty,
                exercise.checker,
                POINTS[exercise.difficulty],
                prompt,
                starter,
                answers,
                is_function,
                call,
            )
        )
    return found


# ------------------------------------------------------------------------------------------------
# The master notebook


def raw(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def test_cells(question: Question) -> list[nbformat.NotebookNode]:
    """The test cells of an autograded question: filled in (visible), and the checker
    (hidden unless the answer is a function)."""
    names = ", ".join(question.answers)
    filled = textwrap.dedent(f"""\
        def test_{question.name}_answered(env):
            missing = [n for n in {list(question.answers)!r} if env.get(n, ...) is ...]
            assert not missing, f"fill in {{', '.join(missing)}} (still '...' or undefined)"
        """)
    setup = SETUP[question.chapter]
    context = checker_context(question.starter)
    checked = textwrap.dedent(f"""\
        \"\"\" # BEGIN TEST CONFIG
        hidden: {str(not question.is_function).lower()}
        \"\"\" # END TEST CONFIG
        def test_{question.name}_checker(env):
            # the checker and its data come from this test's own setup, never from the
            # submission's names: only the answers {list(question.answers)!r} are read from it
            import importlib
            checks = importlib.reload(importlib.import_module("kdlib.course.checks"))
            own = {{"__name__": "__grading__"}}
            exec({setup!r}, own)
            exec({context!r}, own)
            scope = {{**own, **vars(checks)}}
            scope.update({{n: env.get(n, ...) for n in {list(question.answers)!r}}})
            verdict = eval({question.call!r}, scope)  # the starter's checker call
            assert type(verdict) is checks.Verdict and verdict.ok is True, \\
                f"{names}: {{getattr(verdict, 'message', verdict)}}"
        """)
    return [
        nbformat.v4.new_code_cell(filled.strip()),
        nbformat.v4.new_code_cell(checked.strip()),
    ]


def is_answer(node: ast.stmt) -> bool:
    """Whether a top-level statement of a starter is where the student answers: a function to
    fill in, or an assignment of the placeholder ``...``."""
    return isinstance(node, ast.FunctionDef) or (
        isinstance(node, ast.Assign) and "..." in ast.unparse(node.value)
    )


def solution_source(starter: str, reference: str) -> str:
    """The master notebook's solution cell: the starter, with its answer statements shown to the
    student only (an Otter prompt block) and the reference answer run in their place (an Otter
    solution block). The starter's other lines (imports, the checker call) run in both.
    """
    lines = starter.splitlines()
    answers = [node for node in ast.parse(starter).body if is_answer(node)]
    out: list[str] = []
    line = 0
    for k, node in enumerate(answers):
        first = node.lineno - 1 - len(getattr(node, "decorator_list", []))
        out += lines[line:first]
        if k == 0:
            out += [
                "# BEGIN SOLUTION NO PROMPT",
                *reference.splitlines(),
                "# END SOLUTION",
            ]
        out += [
            '""" # BEGIN PROMPT',
            *lines[first : node.end_lineno],
            '""" # END PROMPT',
        ]
        line = node.end_lineno
    return "\n".join(out + lines[line:])


def question_cells(question: Question) -> list[nbformat.NotebookNode]:
    """The cells of one question in Otter's master-notebook format."""
    config = {"name": question.name, "points": question.points}
    if question.autograded:
        config["all_or_nothing"] = True
    else:
        config["manual"] = True
    header = "# BEGIN QUESTION\n" + "".join(
        f"{k}: {json.dumps(v)}\n" for k, v in config.items()
    )
    cells = [raw(header.strip()), nbformat.v4.new_markdown_cell(question.prompt)]
    if question.autograded:
        solution = solution_source(question.starter, REFERENCES[question.label].code)
        cells += [
            raw("# BEGIN SOLUTION"),
            nbformat.v4.new_code_cell(solution),
            raw("# END SOLUTION"),
            raw("# BEGIN TESTS"),
            *test_cells(question),
            raw("# END TESTS"),
        ]
    else:
        cells += [
            nbformat.v4.new_markdown_cell(
                "*An open question, graded by hand.* Work in the chapter's notebook for any "
                "computation, then write your answer in the cell below."
            ),
            raw("# BEGIN SOLUTION"),
            nbformat.v4.new_markdown_cell(
                "Graded with the rubric of this exercise on the book's instructor page."
            ),
            raw("# END SOLUTION"),
        ]
    return cells + [raw("# END QUESTION")]


def chapter_title(path: Path) -> str:
    first = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
    return first.lstrip("# ").strip()


def master_notebook(
    path: Path, plain: PlainMarkdown | None = None
) -> nbformat.NotebookNode:
    """The Otter master notebook of the chapter notebook at ``path``."""
    found = questions(path, plain)
    autograded = sum(q.points for q in found if q.autograded)
    manual = sum(q.points for q in found if not q.autograded)
    config = {
        "name": path.stem,
        "requirements": "requirements.txt",
        "overwrite_requirements": True,
        "run_tests": False,  # the course's test grades the reference solutions instead
        "init_cell": False,  # the setup cell starts Otter, after installing it on Colab
        "check_all_cell": False,
        "export_cell": False,
        "generate": True,
        "tests": {"files": False, "ok_format": False},
        "show_question_points": True,
    }
    intro = (
        f"# Assignment: {chapter_title(path)}\n\n"
        f"The exercises of this chapter of *Exploring Knowledge Distillation* "
        f"({release.tag()}), to hand in. {autograded} points are graded automatically, "
        f"{manual} by hand. Run the setup cell first; each answer cell checks your answer "
        "as you go. Read the chapter in the book for the context of each exercise."
    )
    setup = (
        f"{COLAB_SETUP}\nimport otter\n\ngrader = otter.Notebook({path.stem + '.ipynb'!r})\n\n"
        f"{SETUP[path.stem]}"
    )
    cells = [
        raw(
            "# ASSIGNMENT CONFIG\n"
            + "".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()).strip()
        ),
        nbformat.v4.new_markdown_cell(intro),
        nbformat.v4.new_code_cell(setup),
    ]
    for question in found:
        cells += question_cells(question)
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata.kernelspec = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


# ------------------------------------------------------------------------------------------------
# Writing the assignments: never over what this module did not write


def check_out(out: Path, root: Path = ROOT) -> Path:
    """``out`` resolved, after refusing a folder this module may not replace."""
    out = out.resolve()
    for source in ("chapters", "book", "kdlib", "tests", "results", ".git"):
        if out == root / source or (root / source) in out.parents:
            raise AssignmentError(
                f"{out} is inside the course's sources: choose a folder under "
                "_build, e.g. --out _build/assignments"
            )
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise AssignmentError(
            f"{out} is not empty and was not written by kdlib.course.assignments: "
            "choose another --out, or empty it yourself"
        )
    return out


def otter_assign(master: Path, result: Path) -> None:
    """Run ``otter assign`` on a master notebook, in this process (Otter is imported once for
    all the chapters); its chatter is kept out of the output unless it fails."""
    import contextlib
    import io

    from otter.assign import main as assign

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            assign(str(master), str(result), no_pdfs=True, no_run_tests=True)
    except (
        Exception
    ) as exc:  # Otter's own errors: say which chapter, with Otter's message
        raise AssignmentError(
            f"otter assign failed on {master.name}: {exc}\n{chatter.getvalue()}"
        ) from exc


def write_assignments(
    out: Path, root: Path = ROOT, chapters: list[Path] | None = None
) -> list[Path]:
    """Write every chapter's master notebook and run ``otter assign`` on it, into ``out``.
    Returns the autograder bundles."""
    out = check_out(out, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    plain = PlainMarkdown(root)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (work / MARKER).write_text(
            "Written by 'python -m kdlib.course.assignments'; replaced on the "
            "next run: keep nothing of your own in it.\n"
        )
        bundles = []
        for path in chapters or chapter_paths(root):
            folder = work / path.stem
            folder.mkdir()
            nbformat.write(master_notebook(path, plain), folder / path.name)
            (folder / "requirements.txt").write_text(release.requirement() + "\n")
            otter_assign(folder / path.name, folder / "dist")
            for part in ("student", "autograder"):
                (folder / "dist" / part).rename(folder / part)
            (folder / "dist").rmdir()
            bundle = folder / "autograder" / f"{path.stem}-autograder.zip"
            candidates = sorted((folder / "autograder").glob("*.zip"))
            if not candidates:
                raise AssignmentError(
                    f"otter assign wrote no autograder bundle for {path.name}"
                )
            candidates[0].rename(bundle)
            bundles.append(out / bundle.relative_to(work))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            out.rename(old)
            shutil.rmtree(old)
        work.rename(out)
        return bundles
    finally:
        if work.exists():
            shutil.rmtree(work)


# ------------------------------------------------------------------------------------------------
# Grading locally


def grade(submission: Path, bundle: Path) -> dict[str, float]:
    """Grade one submission with ``otter run`` (no container; this environment must hold
    kdlib). Returns the score of each autograded question."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "otter",
                "run",
                "-a",
                str(bundle.resolve()),
                "-o",
                tmp,
                "--no-logo",
                str(submission.resolve()),
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        )
        results = Path(tmp) / "results.json"
        if done.returncode != 0 or not results.exists():
            raise AssignmentError(
                f"otter run failed on {submission}:\n{done.stdout}\n{done.stderr}"
            )
        data = json.loads(results.read_text())
    return {test["name"]: test["score"] for test in data["tests"] if "score" in test}


def solution_notebook(chapter_folder: Path) -> Path:
    """The notebook with the reference answers that ``otter assign`` wrote for a chapter."""
    return chapter_folder / "autograder" / f"{chapter_folder.name}.ipynb"


def benchmark(out: Path, root: Path = ROOT) -> Path:
    """Time ``otter run`` on each chapter's reference solutions; write
    ``results/benchmark_grading.json`` (seconds per submission, by chapter)."""
    from kdlib.results import atomic_write_json, new_provenance

    seconds, load = {}, {}
    for bundle in write_assignments(out, root):
        folder = bundle.parents[1]
        start = time.perf_counter()
        scores = grade(solution_notebook(folder), bundle)
        seconds[folder.name] = time.perf_counter() - start
        load[folder.name] = os.getloadavg()[
            0
        ]  # other programs on the machine slow it down
        print(
            f"{folder.name}: {seconds[folder.name]:.1f} s, {sum(scores.values()):g} points",
            flush=True,
        )
    target = root / "results" / "benchmark_grading.json"
    atomic_write_json(
        target,
        {
            "provenance": new_provenance("python -m kdlib.course.assignments benchmark"),
            "seconds_per_submission": seconds,
            "load_average_1min": load,
        },
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kdlib.course.assignments",
        description="Write the chapters' Otter-Grader assignments.",
    )
    parser.add_argument(
        "command", nargs="?", default="write", choices=("write", "benchmark")
    )
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "assignments")
    args = parser.parse_args(argv)
    try:
        if args.command == "benchmark":
            print(f"wrote {benchmark(args.out)}")
        else:
            bundles = write_assignments(args.out)
            print(f"wrote {len(bundles)} assignments into {args.out}")
    except (AssignmentError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
