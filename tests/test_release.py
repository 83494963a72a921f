"""The release: one version for kdlib and the book, Colab cells pinned to its tag, the release
workflow (.github/workflows/release.yml) consistent with the Makefile, the licences, and the
download of every chapter's notebook from the book."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

import kdlib
from kdlib.course import release
from kdlib.course.editions import ROOT, chapter_paths

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"

@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def makefile_targets() -> set[str]:
    return set(
        re.findall(
            r"^([A-Za-z][\w-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M
        )
    )


def run_lines(workflow: dict) -> list[str]:
    return [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def test_one_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert (
        re.search(r'^version = "(.*)"$', pyproject, flags=re.M).group(1)
        == kdlib.__version__
    ), "pyproject.toml's version differs from kdlib.__version__: change both (RELEASING.md)"
    assert re.fullmatch(r"\d+\.\d+\.\d+", kdlib.__version__)


def test_install_line_pins_the_tag() -> None:
    line = release.colab_install_line("1.2.3", "https://github.com/o/r")
    assert line == '%pip install -q "kdlib @ git+https://github.com/o/r@v1.2.3"'
    assert release.colab_install_line().endswith(f'@v{kdlib.__version__}"')
    assert kdlib.REPOSITORY in release.requirement()


def test_stamp_rewrites_only_the_install_line(tmp_path: Path) -> None:
    original = ROOT / "chapters" / "05_mnist.ipynb"
    copy = tmp_path / original.name
    shutil.copy(original, copy)
    before = nbformat.read(copy, as_version=4)
    release.stamp(copy, "9.9.9")
    after = nbformat.read(copy, as_version=4)
    cell_before, cell_after = release.colab_cell(before), release.colab_cell(after)
    assert '@v9.9.9"' in cell_after.source
    assert [line for line in cell_after.source.splitlines() if "%pip" not in line] == [
        line for line in cell_before.source.splitlines() if "%pip" not in line
    ]
    assert cell_after.metadata == cell_before.metadata
    assert [c.source for c in after.cells[2:]] == [c.source for c in before.cells[2:]]
    assert (
        release.stamp(copy, "9.9.9") is False
    )  # already pinned: the file is not rewritten


def test_stamp_refuses_a_notebook_without_install_cell(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), path
    )
    with pytest.raises(ValueError, match="not a Colab install cell"):
        release.stamp(path)


def test_every_chapter_installs_the_release() -> None:
    notebooks = [*chapter_paths(), ROOT / "book" / "instructor.ipynb"]
    wrong = [
        p.name
        for p in notebooks
        if release.colab_install_line()
        not in release.colab_cell(nbformat.read(p, as_version=4)).source
    ]
    assert not wrong, (
        f"Colab cells not at {release.tag()}: {wrong}; run python -m kdlib.course.release "
        "stamp chapters/*.ipynb book/instructor.ipynb"
    )


def test_workflow_runs_on_version_tags(workflow: dict) -> None:
    triggers = workflow.get(
        "on", workflow.get(True)
    )  # YAML 1.1 reads a bare `on` as True
    assert triggers["push"]["tags"] == ["v*"]


def test_workflow_make_targets_exist(workflow: dict) -> None:
    called = {
        target
        for run in run_lines(workflow)
        for match in re.finditer(r"(?:^|[;&|]\s*|\n\s*)make\s+([^\n;&|]*)", run)
        for target in match.group(1).split()
        if "=" not in target and not target.startswith("-")
    }
    assert called >= {"test", "book", "student", "pdf", "assignments"}
    assert (
        not called - makefile_targets()
    ), f"make targets missing from the Makefile: {called - makefile_targets()}"


def test_workflow_python_matches_the_makefile(workflow: dict) -> None:
    python = re.search(
        r"^PYTHON \?= python(\d+\.\d+)\s*$", (ROOT / "Makefile").read_text(), flags=re.M
    ).group(1)
    image = workflow["jobs"]["build"]["container"]
    image = image["image"] if isinstance(image, dict) else image
    assert re.match(
        rf"python:{re.escape(python)}(\D|$)", image
    ), f"{image} is not Python {python}"


def test_workflow_publishes_everything(workflow: dict) -> None:
    uses = [
        step.get("uses", "")
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
    ]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    text = WORKFLOW.read_text()
    assert (
        f"branch={kdlib.STUDENT_BRANCH}" in text
    ), "the student notebooks go to kdlib.STUDENT_BRANCH"
    for asset in (
        "book.pdf",
        "chapters/*.ipynb",
        "student-edition-",
        "-autograder.zip",
        "gh release upload",
    ):
        assert asset in text, asset


def test_licences_and_footer() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "CC BY 4.0" in (ROOT / "LICENSE-CONTENT").read_text()
    assert "release_footer: book/_ext" in (ROOT / "_config.yml").read_text()
    import sys

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from release_footer import footer_html

    footer = footer_html()
    assert (
        f"Version {kdlib.__version__}" in footer
        and "/LICENSE" in footer
        and "/LICENSE-CONTENT" in footer
    )


def test_chapters_offer_their_notebook_for_download() -> None:
    assert re.search(
        r"^\s+use_download_button: true", (ROOT / "_config.yml").read_text(), flags=re.M
    )
    html = ROOT / "_build" / "html"
    if not (html / "index.html").exists():
        pytest.skip("the book is not built (make book)")
    for path in chapter_paths():
        page = (html / "chapters" / f"{path.stem}.html").read_text()
        assert (
            f"_sources/chapters/{path.name}" in page
        ), f"{path.stem}.html offers no .ipynb download"
        assert (html / "_sources" / "chapters" / path.name).exists()
