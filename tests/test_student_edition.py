"""The student edition: no solution survives, every exercise keeps a starter and a difficulty.

That the starters run up to their placeholders is checked where they run: nbval executes every
chapter, starters included, and a starter whose checker sees the placeholder answers with a
hint instead of raising."""

from __future__ import annotations

import json

import nbformat
import pytest

from kdlib import editions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return out, editions.build_student(out)


def test_no_solution_text_or_output_remains(built) -> None:
    out, paths = built
    assert {p.name for p in paths} == {p.name for p in editions.chapter_paths()}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        text = json.dumps(nb.cells)
        assert "{solution" not in text and "solution-start" not in text and "solution-end" not in text, path.name
        assert not any(editions.SOLUTION in editions.tags(c) for c in nb.cells)
        for cell in nb.cells:
            if editions.STARTER in editions.tags(cell):
                assert cell.outputs == [] and cell.execution_count is None


def test_every_exercise_has_a_difficulty_and_a_starter_with_a_placeholder(built) -> None:
    out, paths = built
    total = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        found = editions.exercises(nb, path.stem)  # raises if a starter or a difficulty is missing
        total += len(found)
        for i, cell in enumerate(nb.cells):
            if editions.STARTER in editions.tags(cell):
                assert "..." in cell.source or "NotImplementedError" in cell.source, (path.name, i)
    assert total >= 30
    assert all(ex.difficulty in editions.DIFFICULTIES for p in paths
               for ex in editions.exercises(nbformat.read(p, as_version=4), p.stem))


def test_the_instructor_edition_keeps_its_solutions() -> None:
    for path in editions.chapter_paths():
        nb = nbformat.read(path, as_version=4)
        labels = [ex.label for ex in editions.exercises(nb, path.stem)]
        text = "\n".join(c.source for c in nb.cells if editions.SOLUTION in editions.tags(c))
        for label in labels:
            assert f"{label}\n:class: dropdown" in text, (path.name, label)  # every exercise has a solution
        untagged = "\n".join(c.source for c in nb.cells if editions.SOLUTION not in editions.tags(c))
        assert "{solution" not in untagged, path.name  # no solution escapes its tag


def test_the_book_source_turns_execution_off(built) -> None:
    out, _ = built
    config = (out / "_config.yml").read_text()
    assert 'execute_notebooks: "off"' in config and "(student edition)" in config
    assert (out / "_toc.yml").exists() and (out / "book" / "intro.md").exists()


def test_one_repository_address_everywhere() -> None:
    """kdlib.REPOSITORY is the one address; the book's configuration, pyproject.toml and every
    chapter's Colab install cell must carry the same one."""
    import kdlib
    from kdlib.experiments import REPOSITORY_RAW

    root = editions.ROOT
    assert f"url: {kdlib.REPOSITORY}\n" in (root / "_config.yml").read_text()
    assert f'Repository = "{kdlib.REPOSITORY}"' in (root / "pyproject.toml").read_text()
    assert REPOSITORY_RAW.startswith("https://raw.githubusercontent.com/") and REPOSITORY_RAW.endswith("/main")
    for path in editions.chapter_paths():
        first_code = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert f"git+{kdlib.REPOSITORY}@{kdlib.BRANCH}" in first_code.source, path.name
        assert "remove-cell" in editions.tags(first_code), path.name  # hidden in the HTML, kept for Colab


def test_notebook_code_lines_fit_the_book_column() -> None:
    """The book's column shows about 90 characters of code at 1400 px (the browser check measures
    it); keep every visible code line within 88 so that none scrolls sideways."""
    long = []
    for path in [*editions.chapter_paths(), editions.ROOT / "book" / "instructor.ipynb"]:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and "remove-cell" not in editions.tags(cell):
                long += [f"{path.name} cell {i}: {len(line)} characters" for line in cell.source.splitlines()
                         if len(line) > 88]
    assert not long, long
