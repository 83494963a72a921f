"""The PDF of the book (`make pdf`, tests/book_pdf.py): every page of the table of contents in
order, every chapter's title, every figure, the bibliography, and equations typeset (no raw TeX
left in its text).

`make pdf` builds the PDF and then runs this file; elsewhere these tests are skipped until
_build/pdf/book.pdf exists."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from kdlib.course.editions import ROOT, chapter_paths, toc_files

PDF = ROOT / "_build" / "pdf" / "book.pdf"


@pytest.fixture(scope="module")
def book():
    pypdf = pytest.importorskip(
        "pypdf", reason="pypdf is in requirements.txt: run `make setup`"
    )
    if not PDF.exists():
        pytest.skip(f"{PDF.relative_to(ROOT)} is not built: run `make book pdf`")
    return pypdf.PdfReader(PDF)


@pytest.fixture(scope="module")
def text(book) -> str:
    return "\n".join(page.extract_text() or "" for page in book.pages)


def flat(text: str) -> str:
    """``text`` with runs of whitespace as one space and typographic quotes as plain ones."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\ufb00", "ff")
    return re.sub(r"\s+", " ", text.replace("\ufb01", "fi").replace("\ufb02", "fl"))


def chapter_title(path: Path) -> str:
    return (
        nbformat.read(path, as_version=4)
        .cells[0]
        .source.splitlines()[0]
        .lstrip("# ")
        .strip()
    )


def image_count(page) -> int:
    """Raster images a page draws (counted from its resources, without decoding them)."""
    xobjects = page.get("/Resources", {}).get("/XObject", {})
    return sum(
        1 for ref in xobjects.values() if ref.get_object().get("/Subtype") == "/Image"
    )


def test_every_page_of_the_book_in_order(book) -> None:
    pages = toc_files(ROOT)
    assert len(book.outline) == len(
        pages
    ), "one bookmark per page of the table of contents"
    starts = [book.get_destination_page_number(item) for item in book.outline]
    assert starts == sorted(starts) and starts[0] == 0
    assert len(book.pages) >= 2 * len(
        pages
    ), f"only {len(book.pages)} pages for {len(pages)} book pages"


def test_every_chapter_title(text: str) -> None:
    missing = [
        chapter_title(p)
        for p in chapter_paths()
        if flat(chapter_title(p)) not in flat(text)
    ]
    assert not missing, f"chapter titles not in the PDF: {missing}"


def test_no_raw_tex(text: str) -> None:
    """No TeX delimiter or command survives; a shell variable such as ``$KDLIB_DATA`` in a
    command line is not TeX."""
    tex = r"\$(?![A-Z][A-Z0-9_]+)|\\frac|\\begin\{"
    raw = sorted({m.group(0) for m in re.finditer(rf".{{0,30}}({tex}).{{0,30}}", text)})
    assert (
        not raw
    ), f"raw TeX in the PDF's text (an equation MathJax did not typeset): {raw[:5]}"


def test_every_figure_and_the_bibliography(book, text: str) -> None:
    figures = sum(
        1
        for p in chapter_paths()
        for cell in nbformat.read(p, as_version=4).cells
        if cell.get("metadata", {}).get("mystnb", {}).get("figure")
    )
    images = sum(image_count(page) for page in book.pages)
    assert images >= figures, f"{images} images in the PDF for {figures} figures"
    references = (ROOT / "book" / "references.bib").read_text()
    first_title = re.search(r"title\s*=\s*[{\"]+([^}\"]+)", references).group(1)
    assert (
        flat(first_title)[:40].lower() in flat(text).lower()
    ), "the bibliography is missing"


def test_pages_are_a4_with_a_margin(book) -> None:
    box = book.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (596, 842)
