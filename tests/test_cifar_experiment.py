"""kdlib.experiments.cifar: the rows of Table 2, subsets, and one tiny end-to-end run."""

from __future__ import annotations

import dataclasses

import torch

from kdlib.data import ImageDataset
from kdlib.experiments import cifar


def test_table2_has_the_reports_nine_rows_in_order() -> None:
    paper = cifar.paper_table2()
    assert [row.name for row in cifar.TABLE2] == list(paper.experiment)
    ideal = [row for row in cifar.TABLE2 if row.name.startswith("Ideal")]
    assert all(row.blocks == (1, 1, 1, 1) and row.stride == 2 for row in ideal)
    assert len({row.row_id(0) for row in cifar.TABLE2}) == 9


def test_first_per_class_keeps_the_dataset_order() -> None:
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2])
    assert cifar.first_per_class(labels, 2).tolist() == [0, 2, 1, 4, 3, 6]


def fake_cifar(n_train: int = 200, n_test: int = 100) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n_train) % 10
    images = torch.randint(0, 256, (n_train, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[:, 0] = (labels * 25).to(torch.uint8)[:, None, None]  # the class is visible in the red channel
    test_labels = torch.arange(n_test) % 10
    test = torch.randint(0, 256, (n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    test[:, 0] = (test_labels * 25).to(torch.uint8)[:, None, None]
    return ImageDataset("fake", images, labels, test, test_labels, tuple("abcdefghij"),
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "synthetic")


def test_tiny_end_to_end_run_is_resumable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    tiny = dataclasses.replace(cifar.SCALES["quick"], width=0.0625, teacher_epochs=1, student_epochs=1,
                               reduced_epochs=1, train_size=200, test_size=100, reduced_per_class=3,
                               batch_size=50, timing_repeats=3)
    monkeypatch.setitem(cifar.SCALES, "quick", tiny)
    rows = (cifar.TABLE2[1], cifar.TABLE2[7])
    out = tmp_path / "r.json"
    first = cifar.run_cifar("quick", out=out, rows=rows, dataset=fake_cifar(), progress=False)
    assert {"teacher", rows[0].row_id(0), rows[1].row_id(0)} <= set(first["rows"])
    assert first["rows"][rows[1].row_id(0)]["train_size"] == 30  # the reduced set: 3 per class
    again = cifar.run_cifar("quick", out=out, rows=rows, dataset=fake_cifar(), progress=False)
    for key in ("accuracy", "train_wall_s"):  # not recomputed: the wall time would differ
        assert again["rows"][rows[0].row_id(0)][key] == first["rows"][rows[0].row_id(0)][key]
    table = cifar.summary_table(again, rows)
    assert list(table.experiment) == [r.name for r in rows]
    assert (table.flop_ratio > 1).all()
