"""kdlib's floors, read from its imports: the module diagram of CONTRIBUTING.md, and its test.

kdlib is built in floors. A module imports only modules of its own floor or of the floors below
it (at module level; an import inside a function, done on first use, is allowed to reach up, as
:func:`kdlib.terms.make_term` does to register every method), and nothing in the library imports
the course's machinery (:mod:`kdlib.course`), which stands beside the building:

1. **foundations**: data, augmentation, networks, losses, statistics, result files;
2. **training and methods**: the loop, the terms and their registry, one module per method,
   quantization, the fast CIFAR-10 recipe;
3. **experiments**: one module per table and the command-line runner.

``python -m kdlib.course.layout`` prints the diagram; ``--write CONTRIBUTING.md`` replaces the
part of that file between the markers; ``tests/test_layout.py`` fails when a module breaks the
floors or the file's diagram is out of date.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]

FLOORS = ("foundations", "training and methods", "experiments")
"""The floors, bottom first."""

SECOND_FLOOR = ("kdlib.train", "kdlib.terms", "kdlib.features", "kdlib.methods", "kdlib.quantize",
                "kdlib.fastnet", "kdlib.stacked")
"""The modules (and packages) of the second floor; the rest of the library, but for
:mod:`kdlib.experiments`, is the first."""

BEGIN, END = "<!-- layout:begin (python -m kdlib.course.layout --write CONTRIBUTING.md) -->", "<!-- layout:end -->"


def module_name(path: Path) -> str:
    """``kdlib/methods/kd.py`` -> ``kdlib.methods.kd``; a package's ``__init__`` is the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """The kdlib modules ``path`` imports at module level (``from kdlib import x`` names the
    module ``kdlib.x`` when ``x`` is one)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "kdlib")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "kdlib":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or \
                    (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists()
                found.add(sub if is_module else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every module of kdlib and the kdlib modules it imports at module level."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        graph[name] = top_level_imports(path) - {name}
    return graph


def floor(module: str) -> int | None:
    """The floor of ``module`` (0 = foundations), ``None`` for the course's machinery and for the
    package ``kdlib`` itself (its ``__init__`` names the public API, loaded on first use)."""
    if module == "kdlib" or module.startswith("kdlib.course"):
        return None
    if module.startswith("kdlib.experiments"):
        return 2
    if any(module == m or module.startswith(m + ".") for m in SECOND_FLOOR):
        return 1
    return 0


def problems(graph: dict[str, set[str]] | None = None) -> list[str]:
    """The imports that break the floors: a library module importing the course, or a module
    importing one of a higher floor."""
    graph = import_graph() if graph is None else graph
    found = []
    for module, imports in sorted(graph.items()):
        for target in sorted(imports):
            if target.startswith("kdlib.course") and not module.startswith("kdlib.course"):
                found.append(f"{module} imports the course's machinery ({target})")
            elif floor(module) is not None and floor(target) is not None and floor(target) > floor(module):
                found.append(f"{module} (floor {floor(module) + 1}, {FLOORS[floor(module)]}) imports "
                             f"{target} (floor {floor(target) + 1}, {FLOORS[floor(target)]})")
    return found


def diagram(graph: dict[str, set[str]] | None = None) -> str:
    """The floors as a Markdown code block: each floor's modules, top floor first, the course's
    machinery beside them, and how many imports go from each floor to each other."""
    graph = import_graph() if graph is None else graph

    def short(module: str) -> str:
        return module.removeprefix("kdlib.")

    rows = []
    for level in reversed(range(len(FLOORS))):
        names = sorted(short(m) for m in graph if floor(m) == level and m != "kdlib.experiments.__main__")
        rows.append((f"{level + 1}. {FLOORS[level]}", names))
    course = sorted(short(m) for m in graph if m.startswith("kdlib.course."))
    lines = ["```text"]
    for title, names in rows:
        lines.append(title)
        lines.extend(_wrap(names))
        lines.append("")
    lines.append("beside them: the course's machinery (imports any floor; nothing in the library imports it)")
    lines.extend(_wrap(course))
    lines.append("")
    lines.append("imports between floors (from -> to: count)")
    counts: dict[tuple[str, str], int] = {}
    for module, imports in graph.items():
        for target in imports:
            a = "course" if module.startswith("kdlib.course") else floor(module)
            b = "course" if target.startswith("kdlib.course") else floor(target)
            if a is None or b is None or a == b:
                continue
            key = (str(a + 1) if isinstance(a, int) else a, str(b + 1) if isinstance(b, int) else b)
            counts[key] = counts.get(key, 0) + 1
    for (a, b), n in sorted(counts.items()):
        lines.append(f"  {a} -> {b}: {n}")
    lines.append("```")
    return "\n".join(lines)


def _wrap(names: list[str], width: int = 80) -> list[str]:
    lines, line = [], "   "
    for name in names:
        if len(line) + len(name) + 2 > width:
            lines.append(line.rstrip())
            line = "   "
        line += f" {name},"
    if line.strip():
        lines.append(line.rstrip(","))
    return lines


def replace_between(text: str, block: str, begin: str, end: str) -> str:
    """``text`` with the part between the marker lines ``begin`` and ``end`` replaced by ``block``
    (a generated part of a hand-written file: this diagram, the performance table)."""
    if begin not in text or end not in text:
        raise ValueError(f"the file has no markers: add the lines\n{begin}\n{end}\nwhere the generated part goes")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def replace_block(text: str, block: str) -> str:
    """``text`` with the diagram between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    return replace_between(text, block, BEGIN, END)


def write_generated(path: Path, block: str, begin: str, end: str) -> None:
    """Replace the generated part of the file at ``path``, atomically (a kill leaves it whole)."""
    from kdlib.results import atomic_write_bytes

    atomic_write_bytes(path, replace_between(path.read_text(), block, begin, end).encode(), "the document")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.course.layout", description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="replace the diagram between the markers of this file")
    args = parser.parse_args(argv)
    broken = problems()
    if broken:
        print("imports that break the floors:\n  " + "\n  ".join(broken))
        return 1
    if args.write:
        write_generated(args.write, diagram(), BEGIN, END)
    else:
        print(diagram())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
