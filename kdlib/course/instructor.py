"""What the instructor's page shows: study hours, a two-week plan, learning objectives, rubrics.

Everything is computed from the course outline, ``results/course_outline.json``: per chapter,
its title, the words of its prose, its code cells, its figures, its learning objectives (the
"You will learn" list of its first cell) and its exercises. The outline is written from the
chapter notebooks by

    python -m kdlib.course.instructor outline     # results/course_outline.json

and read through :func:`kdlib.experiments.published_file`, so the instructor's page runs where
the chapters are not (Colab); a test fails while the outline differs from the chapters.

**Study hours** (a stated rule, not a measurement): reading at :data:`READING_WPM` words a
minute (technical prose with equations), :data:`MINUTES_PER_CODE_CELL` minutes to read and run
each code cell and :data:`MINUTES_PER_FIGURE` to study each figure; each exercise takes
:data:`EXERCISE_MINUTES` by difficulty.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

READING_WPM = 100
"""Words a minute for reading the chapters' prose: about half the speed of ordinary reading,
for text dense with equations that a student is meant to follow line by line."""
MINUTES_PER_CODE_CELL = 1.0
MINUTES_PER_FIGURE = 2.0
EXERCISE_MINUTES = {"easy": 15, "medium": 40, "hard": 90}
"""Minutes a student needs per exercise, by difficulty (including reading the solution)."""

OUTLINE = "course_outline.json"

MODULE_PLAN = (
    ("Week 1, session 1", ("00", "01")),
    ("Week 1, session 2", ("02",)),
    ("Week 1, session 3", ("03", "04")),
    ("Week 2, session 1", ("05", "06")),
    ("Week 2, session 2", ("07",)),
    ("Week 2, session 3", ("08", "09")),
    ("Week 3, session 1", ("10",)),
)
"""The sample two-week module: three sessions a week, each preparing one or two chapters."""

RUBRICS: dict[str, tuple[tuple[int, str], ...]] = {
    "ex-temperature-limits": (
        (
            1,
            "Both limits: uniform (1/L per class) as T grows, the one-hot arg-max as T falls to 0.",
        ),
        (
            1,
            "The KD term as T falls to 0: not the hard-label cross-entropy, because the student "
            "is softened too; $T^2$ KL vanishes while $T$ KL settles at the logit margin.",
        ),
    ),
    "ex-dark-knowledge": (
        (
            1,
            "Finds digits with a runner-up above 0.1 at T = 3.5 from the teacher's logits, with the code.",
        ),
        (
            1,
            "Names the confused pairs and judges from the images whether the strokes overlap.",
        ),
    ),
    "ex-soft-ce": (
        (
            1,
            "Same gradients, so the same students; the logged losses differ by the teacher's "
            "entropy, and only the KL reaches 0 when the student matches the teacher.",
        ),
    ),
    "ex-lower-variance": (
        (
            1,
            "Minimising over a class picks the predictor whose estimate is lowest: noise in the "
            "estimates is selected for (overfitting).",
        ),
        (
            1,
            "A lower-variance objective makes the estimates of all predictors closer to their risks "
            "at once (uniform deviation).",
        ),
        (
            1,
            "Names variance-sensitive (Bernstein-type) bounds, which range-based bounds do not distinguish.",
        ),
    ),
    "ex-same-sample": (
        (
            1,
            "An example: the teacher is the label frequency at each input, fitted on S.",
        ),
        (
            1,
            "Shows that the distilled risk then equals the empirical risk for every sample.",
        ),
        (
            1,
            "Explains that the teacher depends on S, so the independence behind the variance term fails.",
        ),
    ),
    "ex-predict-temperature": (
        (
            1,
            "States a prediction before measuring, and measures (or reads the published rows).",
        ),
        (
            1,
            "Compares the differences with the seed-to-seed spread or a paired interval, and "
            "concludes only what the intervals allow.",
        ),
    ),
    "ex-better-teacher": (
        (
            1,
            "Trains the exercise's 5-epoch teacher and the paired students (or reads chapter 7's "
            "5-epoch teacher, a different recipe: batch 64, learning rate 0.05, and says so).",
        ),
        (1, "Reports the gap with its interval, at all labels and with few labels."),
        (
            1,
            "Relates it to Lemma 2 the right way round: in the bound the teacher's bias is not "
            "divided by N while the distilled objective's variance term is, so a less biased "
            "teacher should matter more as N grows; notes that chapter 7's paired gap (5-epoch "
            "minus one-epoch teacher) is positive with all labels and negative with 1,000, which "
            "the bound alone does not predict.",
        ),
    ),
    "ex-batch-speedup": (
        (
            1,
            "Measures or reads the time ratio at several batch sizes, beside the FLOP ratio.",
        ),
        (
            1,
            "Chooses the batch size of the deployment and says the ratio must state it.",
        ),
    ),
    "ex-baseline": (
        (
            1,
            "Another reading (the teacher's architecture without KD, or a student without KD).",
        ),
        (
            1,
            "Names the number that decides (the inference-time ratio) and what each reading predicts.",
        ),
    ),
    "ex-reduced": (
        (1, "Trains (or plans precisely) a teacher on the 5,000 reduced-set images and distils the "
            "ideal student from it with the reduced-set recipe, three seeds or more."),
        (1, "Reports its gain over the labels-only students paired by seed, with its interval, beside "
            "the table's reduced-set gain and both teachers' accuracies."),
        (
            1,
            "Concludes only what the intervals allow, and notes that the two teachers differ in "
            "accuracy as well as in the images they saw.",
        ),
    ),
    "ex-own-teacher": (
        (1, "Writes down a prediction from chapter 4 before running."),
        (
            1,
            "Runs the sweep with the new recipe and reports its gain with an interval.",
        ),
        (
            1,
            "Explains the result by calibration (distance of the probabilities from p*), with its caveats.",
        ),
    ),
    "ex-test-shift": (
        (1, "Says a shift fitted on the test images makes the test errors biased downwards."),
        (
            1,
            "Explains that the selection effect can differ between the two students, so the "
            "gap with the control is no longer a clean measurement; choose on validation.",
        ),
    ),
    "ex-dkd-collapse": (
        (1, "Compares the weights of the non-target part: KD's 0.5 T^2 (1 - p_t), small for a "
            "confident teacher, against DKD's beta T^2 = 128, which drowns the cross-entropy."),
        (1, "Names a number to compute before training (the teacher's mean 1 - p_t at the chosen T "
            "on the training images) and how it sets a starting beta, then validation chooses."),
    ),
    "ex-discriminator": (
        (1, "Reads the discriminator's accuracy at the last epoch (about chance)."),
        (
            1,
            "Explains that the term's gradient then has no direction, so no gain over KD is expected.",
        ),
    ),
}
"""The rubric of each open exercise: (points, what earns them). Its points add up to the
exercise's points in the assignments (:data:`kdlib.course.assignments.POINTS`)."""


# ------------------------------------------------------------------------------------------------
# The outline, from the chapters


def objectives(first_cell: str, plain) -> list[str]:
    """The "You will learn" list of a chapter's first cell, as plain text."""
    match = re.search(
        r"You\s+will\s+learn\s*\n(.*?)(?:\n\s*\n|\Z)", first_cell, flags=re.S
    )
    if match is None:
        return []
    items = re.split(r"\n- ", "\n" + match.group(1).strip())
    return [
        re.sub(r"\s+", " ", plain.roles(item)).strip().rstrip(";.")
        for item in items
        if item.strip()
    ]


def words(text: str) -> int:
    """Words of Markdown prose: directive fences, options and labels are not words."""
    text = re.sub(
        r"^[ \t]*(`{3,}|:{3,}).*$|^[ \t]*:[\w-]+:.*$|^\(.*\)=$", "", text, flags=re.M
    )
    return len(re.findall(r"[A-Za-z0-9][\w'’-]*", text))


def chapter_outline(path: Path, plain) -> dict:
    """The outline of one chapter notebook."""
    import nbformat

    from kdlib.course.assignments import questions
    from kdlib.course.editions import SOLUTION, tags

    notebook = nbformat.read(path, as_version=4)
    shown = [
        c
        for c in notebook.cells
        if SOLUTION not in tags(c) and "remove-cell" not in tags(c)
    ]
    return {
        "title": notebook.cells[0].source.splitlines()[0].lstrip("# ").strip(),
        "prose_words": sum(words(c.source) for c in shown if c.cell_type == "markdown"),
        "code_cells": sum(c.cell_type == "code" for c in shown),
        "figures": sum(
            bool(c.get("metadata", {}).get("mystnb", {}).get("figure")) for c in shown
        ),
        "objectives": objectives(notebook.cells[0].source, plain),
        "exercises": [
            {
                "label": q.label,
                "title": q.title,
                "difficulty": q.difficulty,
                "checker": q.checker,
                "points": q.points,
                "autograded": q.autograded,
            }
            for q in questions(path, plain)
        ],
    }


def outline(root: Path | None = None) -> dict:
    """The outline of every chapter, in order, from the notebooks of a checkout."""
    from kdlib.course.editions import ROOT, PlainMarkdown, chapter_paths

    root = root or ROOT
    plain = PlainMarkdown(root)
    return {path.stem: chapter_outline(path, plain) for path in chapter_paths(root)}


def write_outline(root: Path | None = None) -> Path:
    from kdlib.course.editions import ROOT
    from kdlib.results import atomic_write_json

    target = (root or ROOT) / "results" / OUTLINE
    atomic_write_json(
        target,
        {"command": "python -m kdlib.course.instructor outline", "chapters": outline(root)},
    )
    return target


def load_outline() -> dict:
    """The published outline (from the checkout, or downloaded and verified elsewhere)."""
    from kdlib.experiments import published_file

    return json.loads(published_file(OUTLINE).read_text())["chapters"]


# ------------------------------------------------------------------------------------------------
# The tables of the instructor's page (at most four short columns: they must fit a phone)


def study_minutes(chapter: dict) -> tuple[float, float]:
    """(reading, exercises) minutes of one chapter by the rule of this module."""
    reading = (
        chapter["prose_words"] / READING_WPM
        + MINUTES_PER_CODE_CELL * chapter["code_cells"]
        + MINUTES_PER_FIGURE * chapter["figures"]
    )
    exercises = sum(EXERCISE_MINUTES[e["difficulty"]] for e in chapter["exercises"])
    return reading, exercises


def study_hours_table(chapters: dict):
    """Hours of study per chapter: reading, exercises, total."""
    import pandas as pd

    rows = []
    for stem, chapter in chapters.items():
        reading, exercises = study_minutes(chapter)
        rows.append(
            {
                "chapter": stem[:2],
                "reading (h)": reading / 60,
                "exercises (h)": exercises / 60,
                "total (h)": (reading + exercises) / 60,
            }
        )
    table = pd.DataFrame(rows)
    total = {"chapter": "all", **{c: table[c].sum() for c in table.columns[1:]}}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def module_plan_table(chapters: dict):
    """The sample two-week module, with each session's study hours."""
    import pandas as pd

    rows = []
    for session, numbers in MODULE_PLAN:
        hours = (
            sum(
                sum(study_minutes(c))
                for stem, c in chapters.items()
                if stem[:2] in numbers
            )
            / 60
        )
        rows.append(
            {
                "session": session,
                "chapters": ", ".join(numbers),
                "study (h)": hours,
                "hand in": "assignments " + ", ".join(numbers),
            }
        )
    return pd.DataFrame(rows)


def points_table(chapters: dict):
    """Points of each chapter's assignment: autograded, and graded by hand with a rubric."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "chapter": stem[:2],
                "exercises": len(c["exercises"]),
                "autograded": sum(
                    e["points"] for e in c["exercises"] if e["autograded"]
                ),
                "by rubric": sum(
                    e["points"] for e in c["exercises"] if not e["autograded"]
                ),
            }
            for stem, c in chapters.items()
        ]
    )


def exercises_table(chapters: dict):
    """Every exercise: chapter, title, difficulty, and how it is graded."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "chapter": stem[:2],
                "exercise": e["title"],
                "level": e["difficulty"],
                "graded": "checker" if e["autograded"] else "rubric",
            }
            for stem, c in chapters.items()
            for e in c["exercises"]
        ]
    )


def run_time_table(chapters: dict):
    """Minutes each chapter takes top to bottom: ``quick`` as measured by
    ``benchmarks/chapter_times.py``; ``full`` measured for the theory chapters, and for the
    experiment chapters the recorded wall time of the experiment they rerun, and where it ran.
    """
    import pandas as pd

    from kdlib.course.editions import experiment_minutes
    from kdlib.experiments import published_file

    times = json.loads(published_file("chapter_times.json").read_text())["seconds"]
    rows = []
    for stem in chapters:
        measured = times.get(stem, {})
        row = {
            "chapter": stem[:2],
            "quick (min)": measured.get("quick", float("nan")) / 60,
        }
        full = experiment_minutes(
            stem, lambda name: json.loads(published_file(name).read_text())
        )
        if full is not None:
            row["full (min)"], where = full
            row["full: what ran"] = "experiment, " + where
        else:
            row["full (min)"] = measured.get("full", float("nan")) / 60
            row["full: what ran"] = "the chapter"
        rows.append(row)
    return pd.DataFrame(rows)


def grading_seconds() -> dict:
    """Seconds ``otter run`` took to grade one submission, per chapter, and where it ran
    (``python -m kdlib.course.assignments benchmark``)."""
    from kdlib.experiments import published_file

    return json.loads(published_file("benchmark_grading.json").read_text())


def objectives_markdown(chapters: dict) -> str:
    """Each chapter's learning objectives as Markdown: a bold chapter title and a list."""
    parts = []
    for chapter in chapters.values():
        items = "\n".join(f"- {o}" for o in chapter["objectives"]) or "- (none stated)"
        parts.append(f"**{chapter['title']}**\n\n{items}")
    return "\n\n".join(parts)


def rubrics_markdown(chapters: dict) -> str:
    """The rubric of every open exercise as Markdown, in the book's order."""
    parts = []
    for chapter in chapters.values():
        for exercise in chapter["exercises"]:
            if exercise["autograded"]:
                continue
            lines = "\n".join(
                f"- {points} pt: {text}" for points, text in RUBRICS[exercise["label"]]
            )
            parts.append(
                f"**{exercise['title']}** (chapter {chapter['title'].split('.')[0]}, "
                f"{exercise['difficulty']}, {exercise['points']} pt)\n\n{lines}"
            )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.course.instructor")
    parser.add_argument("command", choices=("outline",))
    parser.parse_args(argv)
    try:
        print(f"wrote {write_outline()}")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
