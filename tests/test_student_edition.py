"""The student edition: no solution survives, every exercise keeps a starter and a difficulty.

That the starters run up to their placeholders is checked where they run: nbval executes every
chapter, starters included, and a starter whose checker sees the placeholder answers with a
hint instead of raising."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from kdlib.course import editions


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


STUDENT_HEADING = re.compile(r"^#{2,6} Exercise (\d+): (.+) \((easy|medium|hard)\)$", re.M)


def test_every_exercise_has_a_numbered_heading_and_a_starter_with_a_placeholder(built) -> None:
    """Each exercise reads "### Exercise 26: A paired interval by hand (easy)" in the student
    notebooks: the book's number (numbered through the book, as its HTML numbers them), the
    instructor edition's title and difficulty, and a starter right after it."""
    out, paths = built
    headings = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if editions.EXERCISE in editions.tags(cell):
                head = STUDENT_HEADING.match(cell.source)
                assert head, (path.name, cell.source[:80])
                headings.append((int(head.group(1)), head.group(2), head.group(3)))
                assert editions.STARTER in editions.tags(nb.cells[i + 1]), (path.name, i)
            if editions.STARTER in editions.tags(cell):
                assert "..." in cell.source or "NotImplementedError" in cell.source, (path.name, i)
    instructor = [ex for p in editions.chapter_paths() for ex in editions.exercises(nbformat.read(p, as_version=4),
                                                                                     p.stem)]
    assert len(headings) == len(instructor) >= 30
    assert [h[0] for h in headings] == list(range(1, len(headings) + 1))
    assert [(h[1], h[2]) for h in headings] == [(ex.title, ex.difficulty) for ex in instructor]


MYST = re.compile(r"\{[A-Za-z][\w:+-]*\}`|^[ \t]*(`{3,}|:{3,})\{|^\([\w:.-]+\)=[ \t]*$", re.M)


def test_student_notebooks_are_plain_jupyter_markdown(built) -> None:
    """No MyST role (``{cite:t}`` ...) or directive (a ```{name} or :::{name} fence) or target
    is left, since Jupyter and Colab show them as raw text; and nothing mentions solutions."""
    out, paths = built
    for path in paths:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            shown = [cell.source] if cell.cell_type == "markdown" else [
                "".join(output.get("data", {}).get("text/markdown", "")) for output in cell.get("outputs", [])]
            for markdown in shown:
                assert not MYST.search(markdown), (path.name, i, MYST.search(markdown).group(0))
            text = cell.source + json.dumps(cell.get("outputs", []))
            assert not re.search(r"\bsolutions?\b", text, re.I), (path.name, i)
    for page in [*(out / "book").glob("*.md"), *(out / "book").glob("*.ipynb")]:
        assert not re.search(r"\bsolutions?\b", page.read_text(), re.I), page.name


def test_citations_figures_and_references_read_as_text(built) -> None:
    out, _ = built
    losses = nbformat.read(out / "chapters" / "02_losses.ipynb", as_version=4)
    text = "\n".join(c.source for c in losses.cells)
    assert "Hinton et al. (2015)" in text and "(Hinton et al., 2015)" in text
    numbers = editions.book_numbers(editions.ROOT)
    for path in editions.chapter_paths(out):
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            if cell.cell_type == "code" and figure.get("caption"):  # the caption follows as Markdown
                caption = cells[i + 1]
                assert caption.cell_type == "markdown" and "remove-cell" in editions.tags(caption)
                assert caption.source.startswith(f"**{numbers[figure['name']]}.** "), (path.name, i)
    assert "Figure " in text  # the {numref} to the sweep's figure


def test_launch_buttons_open_the_student_notebooks(built) -> None:
    import kdlib

    out, _ = built
    config = (out / "_config.yml").read_text()
    assert re.search(rf"^repository:\n(?:  .*\n)*?  branch: {kdlib.STUDENT_BRANCH}$", config, re.M)
    assert kdlib.STUDENT_BRANCH != kdlib.BRANCH
    assert (out / editions.MARKER).is_file()


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
    assert REPOSITORY_RAW == (kdlib.REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/")
                              + f"/v{kdlib.__version__}")  # the release's own result files
    for path in editions.chapter_paths():
        first_code = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert f"git+{kdlib.REPOSITORY}@v{kdlib.__version__}" in first_code.source, path.name
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


def test_headings_never_skip_a_level(built) -> None:
    """An exercise's heading sits one level below the section it is in ("## Exercises", then
    "### Exercise 3: ..."), even after a subsection: MyST warns on a skipped level, and the
    student edition's build fails on warnings."""
    out, paths = built
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        previous = 1
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for match in editions.HEADING.finditer(cell.source):
                level = len(match.group("hashes"))
                assert level <= previous + 1, (path.name, match.group(0))
                previous = level
