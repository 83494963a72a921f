"""The student edition: the course's notebooks and book without the solutions.

Exercises are marked by cell tags, never detected from their text: a markdown cell tagged
``exercise`` states an exercise, the code cell after it, tagged ``starter``, is where the student
works (its body holds a ``...`` or ``raise NotImplementedError`` placeholder, and a checker from
:mod:`kdlib.course.checks` where the answer is computable), and every cell of a solution is tagged
``solution``. The student edition drops the ``solution`` cells, keeps the starters with their
outputs cleared, and rewrites the rest as plain Jupyter Markdown, so that the notebooks read well
where students open them (Jupyter, Colab) and not only in the built book:

* each exercise directive becomes a heading with its number in the book, its title and its
  difficulty ("Exercise 26: A paired interval by hand (easy)");
* citations become author-year text from ``book/references.bib``; references to figures and
  exercises become their numbers; each figure's caption (kept in the cell's metadata, which
  Jupyter does not show) is added as a Markdown cell after the figure, hidden in the HTML book,
  which shows the caption from the metadata;
* other MyST directives (admonitions, lemmas, proofs) become Markdown quotes and bold titles;
* wording that promises solutions is rewritten.

``python -m kdlib.course.editions student --out _build/student`` writes the student notebooks and a
book source beside them (the same table of contents and configuration, with execution turned
off and the launch buttons pointing at the branch the student notebooks are published to,
:data:`kdlib.STUDENT_BRANCH`); ``--html`` then builds its HTML with Jupyter Book.

The generator never deletes what it did not write: it refuses a folder inside the sources or
one that is not empty and carries no ``.kdlib-edition`` marker, builds into a temporary sibling
folder and swaps it in with a rename, under a lock, so that two runs at once both succeed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
EXERCISE, STARTER, SOLUTION = "exercise", "starter", "solution"
DIFFICULTIES = ("easy", "medium", "hard")

MARKER = ".kdlib-edition"
"""The file that marks a folder written by this module: only such folders are ever replaced."""
MARKER_TEXT = ("Written by 'python -m kdlib.course.editions'. The whole folder is replaced the next time\n"
               "the edition is written: keep nothing of your own in it.\n")
SOURCE_FOLDERS = (".git", ".github", ".ci", ".venv", "book", "chapters", "kdlib", "tests",
                  "results", "benchmarks")
"""Folders of the repository that an edition may never be written into."""
LOCK_TIMEOUT_S = 900.0
"""How long a run waits for another run writing the same edition before giving up."""


class EditionError(Exception):
    """A refusal: the message says what is wrong and how to fix it."""


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def student_notebook(notebook: nbformat.NotebookNode,
                     plain: "PlainMarkdown | None" = None) -> nbformat.NotebookNode:
    """A copy of ``notebook`` without its solution cells, with the starter cells' outputs cleared;
    with ``plain``, its Markdown also rewritten as plain Jupyter Markdown (see the module)."""
    copy = nbformat.from_dict(notebook)
    cells = []
    for cell in copy.cells:
        if SOLUTION in tags(cell):
            continue
        if STARTER in tags(cell):
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    copy.cells = cells
    if plain is not None:
        plain.rewrite(copy)
    return copy


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter, as the instructor's page lists it."""

    chapter: str
    label: str
    title: str
    difficulty: str
    checker: str | None  # the kdlib.course.checks function its starter calls, if any


EXERCISE_HEAD = re.compile(r"```\{exercise\} (.*) \((easy|medium|hard)\)\n:label: (\S+)")


def exercises(notebook: nbformat.NotebookNode, chapter: str) -> list[Exercise]:
    """The exercises of a notebook, from its ``exercise`` cells and the starters after them."""
    found = []
    for i, cell in enumerate(notebook.cells):
        if EXERCISE not in tags(cell):
            continue
        head = EXERCISE_HEAD.match(cell.source)
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


# ------------------------------------------------------------------------------------------------
# Plain Jupyter Markdown: what the student notebooks hold instead of MyST

ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:+-]*)\}`(?P<content>[^`]*)`")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[^}\s]+)\}[ \t]*(?P<arg>.*)$")
OPTION = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
TARGET = re.compile(r"^[ \t]*\((?P<label>[^()\s]+)\)=[ \t]*\n?", re.M)
HEADING = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*$", re.M)
EXERCISE_TITLE = re.compile(r"Exercise( [0-9.]+)?: ")
"""The title of a heading made from an exercise (a section called "Exercises" is not one)."""
ADMONITIONS = ("admonition", "note", "tip", "hint", "important", "warning", "caution",
               "attention", "danger", "error", "seealso")
STUDENT_REWRITES = (
    # the intro of the book: solutions are not in the student edition
    (re.compile(r"Solutions\s+are\s+collapsed\s+under\s+each\s+exercise;\s+some"), "Some"),
    # starters of the open exercises
    (re.compile(r"\(no checker: compare with the solution\)"), "(no checker: an open question)"),
    (re.compile(r"[;,]?\s*compare (?:it |them |your answer )?with the solutions?"), ""),
)
"""Wording of the instructor's edition that promises solutions, and what replaces it."""


def rewrite_wording(text: str) -> str:
    """``text`` without the instructor edition's wording about solutions."""
    for pattern, replacement in STUDENT_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def bibliography(path: Path) -> dict[str, tuple[str, str]]:
    """Author and year of every entry of a BibTeX file, as the book's author-year labels
    write them: "Hinton et al." and "2015" ("n.d." without a year)."""
    from pybtex.backends.plaintext import Backend  # installed with Jupyter Book's bibtex extension
    from pybtex.database import parse_file

    text, entries = Backend(), {}
    for key, entry in parse_file(str(path)).entries.items():
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        surnames = [" ".join(name.render(text) for name in person.rich_last_names)
                    for person in persons]
        if len(surnames) == 1:
            names = surnames[0]
        elif len(surnames) == 2:
            names = f"{surnames[0]} and {surnames[1]}"
        else:
            names = f"{surnames[0]} et al." if surnames else key
        entries[key] = (names, entry.fields.get("year", "n.d."))
    return entries


def toc_files(root: Path) -> list[Path]:
    """The pages of the book in the order of ``_toc.yml`` (root page first)."""
    toc = (root / "_toc.yml").read_text()
    names = re.findall(r"^\s*(?:root|-\s*file):\s*(\S+)\s*$", toc, flags=re.M)
    pages = []
    for name in names:
        for suffix in ("", ".ipynb", ".md"):
            if (root / (name + suffix)).is_file():
                pages.append(root / (name + suffix))
                break
    return pages


def book_numbers(root: Path) -> dict[str, str]:
    """What the book calls each labelled exercise, figure and lemma: "Exercise 26", "Figure 7",
    "Lemma 1". The book numbers each kind through the whole book, in the order of the table of
    contents, and so does this."""
    counts: dict[str, int] = {}
    numbers: dict[str, str] = {}

    def count(kind: str, label: str | None) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        if label:
            numbers[label] = f"{kind} {counts[kind]}"

    def scan_markdown(text: str) -> None:
        for match in re.finditer(r"^[ \t]*(?:`{3,}|:{3,})\{(exercise|figure|prf:\w+)\}[^\n]*\n"
                                 r"((?:[ \t]*:[\w-]+:[^\n]*\n)*)", text, flags=re.M):
            name, options = match.group(1), match.group(2)
            label = re.search(r":(?:label|name):\s*(\S+)", options)
            if name.startswith("prf:") and name != "prf:proof":
                count(name[4:].capitalize(), label and label.group(1))
            elif name in ("exercise", "figure"):
                count(name.capitalize(), label and label.group(1))

    for page in toc_files(root):
        if page.suffix == ".md":
            scan_markdown(page.read_text())
            continue
        for cell in read_chapter(page).cells:
            if cell.cell_type == "markdown":
                scan_markdown(cell.source)
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            if cell.cell_type == "code" and figure.get("caption"):
                count("Figure", figure.get("name"))
    return numbers


def read_chapter(path: Path) -> nbformat.NotebookNode:
    """A chapter notebook, or an :class:`EditionError` in one line naming the file and the fault."""
    try:
        return nbformat.read(path, as_version=4)
    except OSError as error:
        raise EditionError(f"cannot read the chapter {path} ({error.strerror or error}).") from None
    except Exception as error:  # nbformat raises JSON, validation and version errors
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise EditionError(f"the chapter {path} is not a valid notebook ({type(error).__name__}: {first}); "
                           "fix or restore it.") from None


class PlainMarkdown:
    """Rewrites a notebook's MyST Markdown as plain Jupyter Markdown (see the module)."""

    def __init__(self, root: Path = ROOT) -> None:
        self.numbers = book_numbers(root)
        self.references = bibliography(root / "book" / "references.bib")
        self.titles: dict[str, str] = {}  # section labels -> heading text, per notebook

    # roles ----------------------------------------------------------------------------------
    def cite(self, name: str, keys: str) -> str:
        found = []
        for key in (k.strip() for k in keys.split(",") if k.strip()):
            if key not in self.references:
                raise EditionError(f"the citation {key!r} is not in book/references.bib: add its entry there.")
            found.append(self.references[key])
        if name in ("cite:t", "cite:ts"):
            return "; ".join(f"{names} ({year})" for names, year in found)
        if name == "cite:author":
            return "; ".join(names for names, _ in found)
        if name == "cite:year":
            return "; ".join(year for _, year in found)
        return "(" + "; ".join(f"{names}, {year}" for names, year in found) + ")"

    def reference(self, name: str, content: str) -> str:
        explicit = re.fullmatch(r"(?s)(?P<text>.*?)\s*<(?P<label>[^<>]+)>", content)
        label = explicit.group("label") if explicit else content.strip()
        number = self.numbers.get(label)
        if explicit:
            text = explicit.group("text")
            if number:
                text = text.replace("%s", number.split()[-1]).replace("{number}", number.split()[-1])
            return text
        if name == "eq":
            return f"({label})"
        if number and name in ("numref", "prf:ref", "ref"):
            return number
        return self.titles.get(label, label)

    def roles(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            name, content = match.group("name"), match.group("content")
            if name.startswith("cite"):
                return self.cite(name, content)
            if name in ("numref", "ref", "eq", "prf:ref", "doc", "download", "term", "any"):
                return self.reference(name, content)
            if name == "math":
                return f"${content}$"
            return re.sub(r"\s*<[^<>]+>$", "", content)  # any other role: its text

        return ROLE.sub(replace, text)

    # directives -----------------------------------------------------------------------------
    def directive(self, name: str, arg: str, options: dict[str, str], body: str, level: int) -> str:
        label = options.get("label") or options.get("name")
        number = self.numbers.get(label or "", "")
        if name == "exercise":
            title = f"Exercise {number.split()[-1]}: {arg}" if number else f"Exercise: {arg}"
            return f"{'#' * level} {title}\n\n{body}"
        if name.startswith("solution"):
            return ""
        if name in ADMONITIONS:
            title = arg if name == "admonition" else (arg or name.capitalize())
            quoted = "\n".join(f"> {line}" if line else ">" for line in body.splitlines())
            return f"> **{title}**\n>\n{quoted}" if body else f"> **{title}**"
        if name == "prf:proof":
            return f"*Proof.* {body} $\\blacksquare$"
        if name.startswith("prf:"):
            kind = number or name[4:].capitalize()
            return f"**{kind}** ({arg}). {body}" if arg else f"**{kind}.** {body}"
        if name == "math":
            return f"$$\n{body}\n$$"
        if name == "figure":
            caption = f"**{number or 'Figure'}.** {body}" if body else ""
            return f"![{options.get('alt', '')}]({arg})\n\n{caption}".rstrip()
        if name in ("code-block", "code", "code-cell", "sourcecode"):
            return f"```{arg}\n{body}\n```"
        if name in ("bibliography", "tableofcontents", "glossary", "raw"):
            return ""
        return f"**{arg}**\n\n{body}" if arg else body  # margin, sidebar, epigraph, ...

    def directives(self, text: str, level: int) -> str:
        lines, out, i = text.split("\n"), [], 0
        while i < len(lines):
            opening = FENCE.match(lines[i])
            if opening is None:
                out.append(lines[i])
                i += 1
                continue
            fence = opening.group("fence")
            end = i + 1
            while end < len(lines):
                stripped = lines[end].strip()
                if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                    break
                end += 1
            inner = lines[i + 1:end]
            options: dict[str, str] = {}
            while inner and OPTION.match(inner[0]):
                option = OPTION.match(inner[0])
                options[option.group("key")] = option.group("value").strip()
                inner = inner[1:]
            body = self.directives("\n".join(inner).strip("\n"), level + 1)
            out.append(self.directive(opening.group("name"), opening.group("arg").strip(),
                                      options, body, level))
            i = end + 1
        return "\n".join(out)

    def markdown(self, text: str, level: int) -> str:
        """One Markdown cell as plain Markdown; exercise headings at heading ``level``."""
        text = TARGET.sub("", text)
        text = re.sub(r"^[ \t]*\+\+\+.*\n?", "", text, flags=re.M)  # MyST block breaks
        text = re.sub(r"^[ \t]*%.*\n?", "", text, flags=re.M)  # MyST comments
        text = re.sub(r"^(\$\$)[ \t]*\([\w:.-]+\)[ \t]*$", r"\1", text, flags=re.M)  # eq labels
        text = self.directives(text, level)
        return rewrite_wording(self.roles(text)).strip("\n")

    def rewrite(self, notebook: nbformat.NotebookNode) -> None:
        """Rewrite ``notebook`` in place: plain Markdown, figure captions as Markdown cells."""
        self.titles = {}
        for cell in notebook.cells:  # section labels, for {ref} roles
            if cell.cell_type == "markdown":
                for match in re.finditer(r"^\((?P<label>[^()\s]+)\)=\s*\n#+\s+(?P<title>.+)$",
                                         cell.source, flags=re.M):
                    self.titles[match.group("label")] = match.group("title").strip()
        cells, level = [], 2
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = self.markdown(cell.source, level + 1)
                headings = [len(m.group("hashes")) for m in HEADING.finditer(cell.source)
                            if not EXERCISE_TITLE.match(m.group("title"))]
                level = headings[-1] if headings else level
            elif cell.cell_type == "code":
                cell.source = rewrite_wording(cell.source)
            cells.append(cell)
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            if cell.cell_type == "code" and figure.get("caption"):
                number = self.numbers.get(figure.get("name", ""), "Figure")
                cells.append(nbformat.v4.new_markdown_cell(
                    f"**{number}.** {self.roles(figure['caption'])}",
                    metadata={"tags": ["remove-cell"]}))  # the HTML shows the metadata's caption
        notebook.cells = cells


# ------------------------------------------------------------------------------------------------
# Writing the edition: never over what it did not write, and safely when two runs meet

def is_edition(folder: Path) -> bool:
    """Whether ``folder`` was written by this module: it carries the marker. A folder that merely
    looks like an edition (the same file names, the same title) is not one: a student's own
    notebook saved in it must survive."""
    return (folder / MARKER).is_file()


def check_out(out: Path, root: Path = ROOT) -> Path:
    """``out`` as an absolute path, if an edition may be written there; otherwise an
    :class:`EditionError` that says why and what to do."""
    out, root = Path(out).expanduser(), Path(root).resolve()
    if out.is_symlink():
        raise EditionError(f"--out {out} is a symbolic link; give the folder it points to, or a new folder.")
    target = out.resolve()
    if target == root or root.is_relative_to(target):
        raise EditionError(f"--out {out} is the repository or a folder that contains it; writing the edition "
                           "there would replace the course's sources. Give a new folder, e.g. _build/student.")
    for name in SOURCE_FOLDERS:
        if target.is_relative_to(root / name):
            raise EditionError(f"--out {out} lies inside the course's sources ({name}/); give a folder "
                               "outside them, e.g. _build/student.")
    if target.exists() and not target.is_dir():
        raise EditionError(f"--out {out} is a file, not a folder; give a new folder, e.g. _build/student.")
    if target.is_dir() and any(target.iterdir()) and not is_edition(target):
        raise EditionError(f"--out {out} is a folder with files that kdlib did not write (it has no {MARKER} "
                           "marker), and writing the edition would delete them. Give a new or empty folder, "
                           "or move the files away first.")
    return target


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the lock of the edition at ``out`` (a file beside it): one writer at a time."""
    from filelock import FileLock, Timeout

    path = out.parent / f".{out.name}.lock"
    lock = FileLock(str(path), timeout=LOCK_TIMEOUT_S)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"waiting for another run writing {out} to finish ...", file=sys.stderr)
            lock.acquire()
    except Timeout:
        raise EditionError(f"another run has been writing {out} for {LOCK_TIMEOUT_S / 60:.0f} minutes; if no "
                           f"such run is left, delete {path} and try again.") from None
    except OSError as error:
        raise EditionError(f"cannot lock {out}: {path} cannot be created or opened ({error.strerror}); "
                           "make its folder writable, or remove what is in the way.") from None
    try:
        yield
    finally:
        lock.release()


def remove_leftovers(out: Path) -> None:
    """Delete the temporary folders of runs that were killed before they finished: only
    folders named as this module names them that hold nothing but an edition it wrote."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-\w+")
    for path in out.parent.iterdir():
        if not pattern.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
            continue
        content = list(path.iterdir())
        ours = (not content or (path / MARKER).is_file()
                or all(p.name == "edition" and p.is_dir() and not p.is_symlink()
                       and (not any(p.iterdir()) or is_edition(p)) for p in content))
        if ours:
            shutil.rmtree(path, ignore_errors=True)


def write_student(out: Path, root: Path) -> list[str]:
    """Write the student edition's book source into the empty folder ``out``; the names of the
    notebooks written."""
    import kdlib

    (out / "chapters").mkdir(parents=True)
    shutil.copytree(root / "book", out / "book", ignore=shutil.ignore_patterns("instructor.ipynb"))
    for page in (out / "book").glob("*.md"):  # the front and back matter: no promise of solutions
        page.write_text(rewrite_wording(page.read_text()))
    references = out / "book" / "references.md"
    if references.is_file():  # the notebooks cite in plain text now: list every entry
        references.write_text(re.sub(r"^(\s*`{3,}\{bibliography\}[^\n]*)$", r"\1\n:all:",
                                     references.read_text(), flags=re.M))
    toc = (root / "_toc.yml").read_text()
    (out / "_toc.yml").write_text(re.sub(r"^\s*- file: book/instructor\n", "", toc, flags=re.M))  # not for students
    config = (root / "_config.yml").read_text()
    config = re.sub(r"^title: (.*)$", r"title: \1 (student edition)", config, count=1, flags=re.M)
    config = re.sub(r"execute_notebooks: \w+", "execute_notebooks: \"off\"", config, count=1)
    # launch buttons open the student notebooks, published on their own branch
    config = re.sub(r"^(repository:\s*\n(?:[ \t]+\S.*\n)*?[ \t]+branch:)[ \t]*\S+", rf"\1 {kdlib.STUDENT_BRANCH}",
                    config, count=1, flags=re.M)
    (out / "_config.yml").write_text(config)
    plain = PlainMarkdown(root)
    written = []
    for path in chapter_paths(root):
        notebook = student_notebook(read_chapter(path), plain)
        nbformat.write(notebook, out / "chapters" / path.name)
        written.append(path.name)
    return written


def build_student(out: Path, root: Path = ROOT, html: bool = False) -> list[Path]:
    """Write the student edition's book source to ``out``: the book's front matter, table of
    contents and configuration (execution off), and every chapter without its solutions; with
    ``html``, then build its HTML with Jupyter Book. ``out`` is replaced only if this module
    wrote it (see :func:`check_out`); the new edition is written beside it and swapped in."""
    root = Path(root).resolve()
    out = check_out(out, root)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EditionError(f"cannot create {out.parent} ({error.strerror}); give --out in a writable folder.") from None
    with locked(out):
        out = check_out(out, root)  # again: another run may have written there meanwhile
        remove_leftovers(out)
        temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            (temporary / MARKER).write_text(MARKER_TEXT)
            names = write_student(temporary, root)
            if out.exists():  # our edition or an empty folder: move it aside, then swap
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.rename(out, old / "edition")
                os.rename(temporary, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(temporary, out)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        if html:
            beside = Path(sys.executable).parent / "jupyter-book"  # the environment's own
            program = str(beside) if beside.is_file() else shutil.which("jupyter-book")
            if program is None:
                raise EditionError("--html needs Jupyter Book: install it (pip install -r requirements-lock.txt).")
            if subprocess.run([program, "build", str(out), "-W", "-n", "--keep-going"]).returncode != 0:
                raise EditionError(f"jupyter-book could not build the HTML of {out}: see its messages above.")
    return [out / "chapters" / name for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.course.editions",
                                     description="Write the student edition of the course.")
    parser.add_argument("edition", choices=("student",))
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student",
                        help="a new folder, or one this command wrote before (default: _build/student)")
    parser.add_argument("--html", action="store_true",
                        help="then build its HTML with Jupyter Book, under the same lock")
    args = parser.parse_args(argv)
    try:
        written = build_student(args.out, ROOT, html=args.html)
    except EditionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk that fills up, a folder that cannot be written: one line, not a traceback
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where} while writing the student edition to {args.out}; "
              "free some space or give --out in a writable folder.", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} student notebooks and the book source to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

# ------------------------------------------------------------------------------------------------
# The instructor's page

EXPERIMENT_FILES = {"05_mnist": ("mnist_full.json",), "06_cifar10": ("cifar10_full.json", "cifar10_fast_full.json",
                                                          "cifar10_large_full.json"),
                    "07_regimes": ("mnist_regimes_full.json",),
                    "08_algorithms": ("algorithms_full.json", "cifar10_features_full.json"),
                    "09_landmarks": ("anchors_full.json",),
                    "10_modern": ("modern_full.json", "modern_cifar10_full.json")}
"""The result files whose experiments a chapter reruns at the ``full`` profile."""


def experiment_minutes(stem: str, read) -> tuple[float, str] | None:
    """Minutes the experiments of chapter ``stem`` take at the ``full`` profile, from the times
    recorded in their result files (read by ``read(name)``), and where they ran; ``None`` for a
    chapter that reruns no experiment.

    A file counts its wall time, or its rows' own training times where they are the larger (a
    file from before wall times were summed over resumed runs). A teacher the file read from
    the checkpoint cache (its rows' training times then exceed the wall time) is not in the
    wall time: it counts once for the chapter, at its recorded training time, however many of
    the chapter's files read it (the same kind, recipe and seed: on a fresh machine the later
    files read the teacher the first one trained)."""
    if stem not in EXPERIMENT_FILES:
        return None
    seconds, places, teachers = 0.0, [], {}
    for name in EXPERIMENT_FILES[stem]:
        data = read(name)
        env = data["provenance"]["environment"]
        rows = list(data["rows"].values())
        training = sum(row.get("train_wall_s", 0.0) for row in rows)
        wall = data.get("wall_s", 0.0)
        if wall >= training:  # everything was trained by the runs that wrote the file
            seconds += wall
        else:
            cached = [row for row in rows if "teacher" in str(row.get("kind", ""))]
            students = training - sum(row.get("train_wall_s", 0.0) for row in cached)
            seconds += max(wall, students)
            for row in cached:
                key = (row.get("kind"), str(row.get("recipe")), row.get("seed"))
                teachers.setdefault(key, row.get("train_wall_s", 0.0))
        place = env.get("cuda_device") or f"{env['cpu_count']}-core CPU"
        places += [place] if place not in places else []
    return (seconds + sum(teachers.values())) / 60, ", ".join(places)


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
        full = experiment_minutes(path.stem, lambda name: json.loads((root / "results" / name).read_text()))
        if full is not None:
            line["full (min)"], where = full
            line["full measured as"] = f"its experiment, on a {where}"
        else:
            line["full (min)"] = measured.get("full", float("nan")) / 60
            line["full measured as"] = "the chapter"
        ex = exercises(nbformat.read(path, as_version=4), path.stem)
        line["exercises"] = ", ".join(f"{sum(e.difficulty == d for e in ex)} {d}" for d in DIFFICULTIES
                                      if any(e.difficulty == d for e in ex)) or "-"
        lines.append(line)
    return pd.DataFrame(lines)
