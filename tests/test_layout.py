"""The house a reader walks: kdlib's floors, one file per method, the course beside the library,
and the README and CONTRIBUTING examples, run as a new user would run them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib.course import layout

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def test_no_import_breaks_the_floors():
    assert layout.problems() == []


def test_an_upward_import_is_found():
    graph = {"kdlib.data": {"kdlib.train"}, "kdlib.train": {"kdlib.course.checks"}}
    found = layout.problems(graph)
    assert any("kdlib.data" in p and "kdlib.train" in p for p in found)
    assert any("course" in p for p in found)


def test_contributing_diagram_is_up_to_date():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert layout.replace_block(text, layout.diagram()) == text, \
        "run: python -m kdlib.course.layout --write CONTRIBUTING.md"


def test_one_file_per_method_and_no_course_module_at_the_top():
    from kdlib.terms import TERMS
    import kdlib.methods  # noqa: F401
    for name, cls in TERMS.items():
        if cls.__module__.startswith("kdlib."):
            assert cls.__module__.startswith("kdlib.methods."), f"{name} is registered outside kdlib/methods"
    methods = {p.stem for p in (ROOT / "kdlib" / "methods").glob("*.py")} - {"__init__"}
    assert {"kd", "fitnets", "attention", "crd", "adversarial"} <= methods
    top = {p.stem for p in (ROOT / "kdlib").glob("*.py")}
    assert not top & {"editions", "assignments", "instructor", "checks", "release", "layout", "grading"}


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 120
    first_screen = "\n".join(lines[:40])
    assert "make book" in first_screen and "make test" in first_screen
    assert (ROOT / "book" / "_static" / "screenshot.png").exists()


def test_readme_example_trains_a_distilled_student(mnist):
    [example] = code_blocks(ROOT / "README.md", "python")
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.split(":")[-1])
    assert accuracy > 0.9


def test_contributing_method_example_works_by_name_and_by_class():
    import torch

    from kdlib.methods import LabelTerm
    from kdlib.models import mlp, seeded
    from kdlib.terms import TERMS, make_term
    from kdlib.train import TrainConfig, train

    [example] = [b for b in code_blocks(ROOT / "CONTRIBUTING.md", "python") if "register_term" in b]
    name = "logit-penalty-of-the-docs-test"  # not the example's own name, which a reader may have added
    example = example.replace('"logit-penalty"', f'"{name}"')
    namespace: dict = {"__name__": "kdlib_example_method"}
    try:
        exec(compile(example, "logit_penalty.py", "exec"), namespace)
        term = make_term(name, weight=1e-3)
        x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
        log = train(seeded(lambda: mlp([8]), 0), x, y, TrainConfig(epochs=1, batch_size=32),
                    terms=[LabelTerm(), term, namespace["LogitPenaltyTerm"](weight=1e-3)])
        assert name in log.term_losses[0] and f"{name}_2" in log.term_losses[0]
    finally:
        TERMS.pop(name, None)


def test_contributing_performance_table_is_up_to_date():
    import importlib.util

    spec = importlib.util.spec_from_file_location("summary", ROOT / "benchmarks" / "summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert summary.replace_block(text, summary.table()) == text, \
        "run: python benchmarks/summary.py --write CONTRIBUTING.md"


def test_the_cpu_experiments_row_sums_the_cpu_made_files_only(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("summary", ROOT / "benchmarks" / "summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    assert summary.cpu_experiment_rows(tmp_path) == []  # no files: no row
    for file, wall, device in (("cifar10_fast_full.json", 600.0, None),
                               ("cifar10_large_full.json", 1200.0, None),
                               ("modern_cifar10_full.json", 3000.0, "NVIDIA H100")):
        env = {"cuda_device": device, "cpu_count": 2}
        (tmp_path / file).write_text(json.dumps({"provenance": {"environment": env}, "wall_s": wall}))
    [row] = summary.cpu_experiment_rows(tmp_path)
    assert row.endswith("| cifar10-fast 10, cifar10-large 20; 30 in all |") and "2-core" in row
