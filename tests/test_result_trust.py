"""Result files: the checks that run when a file is opened also run when two runs merge under
the lock; rows that are not results are refused on read; every reader parses strict JSON."""

from __future__ import annotations

import json
import os

import pytest
import torch

from kdlib.errors import PathError, UsageError
from kdlib.results import ResultFile, load_results, new_provenance


def provenance(**extra):
    return new_provenance("test", **extra)


def test_two_runs_that_start_one_file_with_different_experiments_do_not_mix(tmp_path):
    path = tmp_path / "r.json"
    first, second = ResultFile(path, "mnist", provenance()), ResultFile(path, "cifar10", provenance())
    first.put("a", {"accuracy": 0.9})
    with pytest.raises(UsageError, match="now holds experiment 'mnist'"):
        second.put("b", {"accuracy": 0.8})
    assert list(load_results(path)["rows"]) == ["a"]


def test_two_runs_at_different_profiles_do_not_mix(tmp_path):
    path = tmp_path / "r.json"
    first = ResultFile(path, "mnist", provenance(profile="quick"))
    second = ResultFile(path, "mnist", provenance(profile="full"))
    first.put("a", {"accuracy": 0.9})
    with pytest.raises(UsageError, match="profile 'quick'"):
        second.put("b", {"accuracy": 0.8})


def test_two_runs_on_different_copies_of_the_data_do_not_mix(tmp_path):
    path = tmp_path / "r.json"
    first, second = ResultFile(path, "c", provenance()), ResultFile(path, "c", provenance())
    first.use_data_source("the course mirror cifar10-jpeg.tgz (checked)")
    second.use_data_source("original CIFAR-10 batches from /data")
    first.put("a", {"accuracy": 0.9})
    with pytest.raises(UsageError, match="two copies of the data"):
        second.put("b", {"accuracy": 0.8})


@pytest.mark.parametrize("accuracy", ['"0.93"', "NaN", "null", "true"])
def test_a_row_whose_accuracy_is_not_a_finite_number_is_refused_on_read(tmp_path, accuracy):
    path = tmp_path / "r.json"
    ResultFile(path, "mnist", provenance()).put("a", {"accuracy": 0.9})
    text = path.read_text().replace('"accuracy": 0.9', f'"accuracy": {accuracy}')
    path.write_text(text)
    with pytest.raises(UsageError):
        load_results(path)
    with pytest.raises(UsageError):
        ResultFile(path, "mnist", provenance())


def test_load_results_checks_the_shape(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"experiment": "x", "rows": []}))
    with pytest.raises(UsageError, match="not a kdlib result file"):
        load_results(path)


def test_load_published_checks_strict_json(tmp_path, monkeypatch):
    from kdlib import experiments

    bad = tmp_path / "mnist_full.json"
    bad.write_text('{"experiment": "m", "provenance": {}, "rows": {"a": {"accuracy": NaN}}}')
    monkeypatch.setattr(experiments, "published_file", lambda relative: bad)
    with pytest.raises(UsageError, match="strict JSON|not valid JSON"):
        experiments.load_published("mnist")


def test_an_out_path_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(PathError, match="not a regular file"):
        ResultFile(fifo, "mnist", provenance())


def test_mnist_teacher_check_compares_a_measure_for_an_older_row(tmp_path, monkeypatch):
    """A row written before digests were recorded holds the teacher's accuracy: a teacher whose
    accuracy differs is refused, as in the other experiments."""
    from kdlib.experiments import mnist
    from kdlib.models import mlp, seeded

    teacher = seeded(lambda: mlp([8], in_features=4, num_classes=3), 0)
    monkeypatch.setattr(mnist, "cached_teacher", lambda *a, **k: (teacher, {"train_wall_s": 1.0}))
    results = ResultFile(tmp_path / "r.json", "mnist-table1", provenance())
    results.put("teacher/seed0", {"kind": "teacher", "seed": 0, "accuracy": 0.99})  # no digest: older row
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    with pytest.raises(UsageError, match="not the one in hand"):
        mnist.load_or_train_teacher(x, y, 0, "quick", "src", results, x, y)
