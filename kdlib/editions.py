"""The student edition: the course's notebooks and book without the solutions.

Exercises are marked by cell tags, never detected from their text: a markdown cell tagged
``exercise`` states an exercise, the code cell after it, tagged ``starter``, is where the student
works (its body holds a ``...`` or ``raise NotImplementedError`` placeholder, and a checker from
:mod:`kdlib.checks` where the answer is computable), and every cell of a solution is tagged
``solution``. The student edition drops the ``solution`` cells, keeps the starters with their
outputs cleared, and keeps everything else as it is.

``python -m kdlib.editions student --out _build/student`` writes the student notebooks and a
book source beside them (the same table of contents and configuration, with execution turned
off: the outputs are those of the instructor's executed notebooks);
``jupyter-book build _build/student`` then builds its HTML (``make student`` does both).
"""

from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
EXERCISE, STARTER, SOLUTION = "exercise", "starter", "solution"
DIFFICULTIES = ("easy", "medium", "hard")


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def student_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` without its solution cells, with the starter cells' outputs cleared."""
    copy = nbformat.from_dict(notebook)
    cells = []
    for cell in copy.cells:
        if SOLUTION in tags(cell):
            continue
        if STARTER in tags(cell):
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    copy.cells = cells
    return copy


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter, as the instructor's page lists it."""

    chapter: str
    label: str
    title: str
    difficulty: str
    checker: str | None  # the kdlib.checks function its starter calls, if any


def exercises(notebook: nbformat.NotebookNode, chapter: str) -> list[Exercise]:
    """The exercises of a notebook, from its ``exercise`` cells and the starters after them."""
    found = []
    for i, cell in enumerate(notebook.cells):
        if EXERCISE not in tags(cell):
            continue
        head = re.match(r"```\{exercise\} (.*) \((easy|medium|hard)\)\n:label: (\S+)", cell.source)
        if head is None:
            raise ValueError(f"{chapter}: an exercise cell must start with '```{{exercise}} Title (difficulty)' "
                             f"and a :label: line, got {cell.source[:80]!r}")
        starter = notebook.cells[i + 1] if i + 1 < len(notebook.cells) else None
        if starter is None or STARTER not in tags(starter):
            raise ValueError(f"{chapter}: exercise {head.group(3)} has no starter cell after it")
        checker = re.search(r"\b(check_\w+)\(", starter.source)
        found.append(Exercise(chapter, head.group(3), head.group(1), head.group(2),
                              checker.group(1) if checker else None))
    return found


def chapter_paths(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("*.ipynb"))


def build_student(out: Path, root: Path = ROOT) -> list[Path]:
    """Write the student edition's book source to ``out``: the book's front matter, table of
    contents and configuration (execution off), and every chapter without its solutions."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "chapters").mkdir(parents=True)
    shutil.copytree(root / "book", out / "book")
    toc = (root / "_toc.yml").read_text()
    (out / "_toc.yml").write_text(re.sub(r"^\s*- file: book/instructor\n", "", toc, flags=re.M))  # not for students
    config = (root / "_config.yml").read_text()
    config = re.sub(r"^title: (.*)$", r"title: \1 (student edition)", config, count=1, flags=re.M)
    config = re.sub(r"execute_notebooks: \w+", "execute_notebooks: \"off\"", config, count=1)
    (out / "_config.yml").write_text(config)
    written = []
    for path in chapter_paths(root):
        target = out / "chapters" / path.name
        nbformat.write(student_notebook(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.editions",
                                     description="Write the student edition of the course.")
    parser.add_argument("edition", choices=("student",))
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    written = build_student(args.out)
    print(f"wrote {len(written)} student notebooks and the book source to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ------------------------------------------------------------------------------------------------
# The instructor's page

EXPERIMENT_FILES = {"05_mnist": "mnist_full.json", "06_cifar10": "cifar10_full.json",
                    "07_regimes": "mnist_regimes_full.json", "08_algorithms": "algorithms_full.json"}
"""The result file whose experiment a chapter reruns at the ``full`` profile."""


def exercise_table(root: Path = ROOT):
    """Every exercise of the course: chapter, title, difficulty and checker."""
    import pandas as pd

    rows = [ex for path in chapter_paths(root) for ex in exercises(nbformat.read(path, as_version=4), path.stem)]
    return pd.DataFrame([{"chapter": ex.chapter[:2], "exercise": ex.title, "difficulty": ex.difficulty,
                          "checker": ex.checker or "none (argument or experiment)"} for ex in rows])


def run_time_table(root: Path = ROOT):
    """Minutes each chapter takes top to bottom: ``quick`` as measured by
    ``benchmarks/chapter_times.py``; ``full`` measured for the theory chapters, and for the
    experiment chapters the recorded wall time of the experiment they rerun (and where it ran)."""
    import json

    import pandas as pd

    times = json.loads((root / "results" / "chapter_times.json").read_text())
    lines = []
    for path in chapter_paths(root):
        measured = times["seconds"].get(path.stem, {})
        line = {"chapter": path.stem[:2], "quick (min)": measured.get("quick", float("nan")) / 60}
        if path.stem in EXPERIMENT_FILES:
            data = json.loads((root / "results" / EXPERIMENT_FILES[path.stem]).read_text())
            env = data["provenance"]["environment"]
            where = env.get("cuda_device") or f"{env['cpu_count']}-core CPU"
            # wall time of the runs on the file; files from before wall times were summed over
            # resumed runs hold less, so their rows' own training times bound it from below
            training = sum(row.get("train_wall_s", 0.0) for row in data["rows"].values())
            line["full (min)"] = max(data.get("wall_s", 0.0), training) / 60
            line["full measured as"] = f"its experiment, on a {where}"
        else:
            line["full (min)"] = measured.get("full", float("nan")) / 60
            line["full measured as"] = "the chapter"
        ex = exercises(nbformat.read(path, as_version=4), path.stem)
        line["exercises"] = ", ".join(f"{sum(e.difficulty == d for e in ex)} {d}" for d in DIFFICULTIES
                                      if any(e.difficulty == d for e in ex)) or "-"
        lines.append(line)
    return pd.DataFrame(lines)
