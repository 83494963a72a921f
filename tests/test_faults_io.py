"""Fault injection, second round (issue 20): flags, result files, caches, an installed kdlib and
the command line. Each test reproduces a defect that was found, on tiny data, in seconds, and
checks the behaviour that replaced it. Permission cases use mode bits that bind root too."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fake_cifar_mirror
from kdlib import data
from kdlib.checkpoints import (checkpoint_path, load_checkpoint, record_teacher, save_checkpoint,
                               weights_digest)
from kdlib.data import ImageDataset
from kdlib.errors import PathError, UsageError
from kdlib.experiments import TimeBudget
from kdlib.experiments.__main__ import main
from kdlib.models import mlp, seeded
from kdlib.results import ResultFile, atomic_write_json, new_provenance
from kdlib.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
MIRROR = "the course mirror cifar10-jpeg.tgz (sha256-verified on every load): CIFAR-10 as JPEG"
ORIGINAL = "original CIFAR-10 (torchvision's python batches, md5-verified) from /data/cifar-10-batches-py"


def strict_json(path: Path) -> dict:
    """Parse ``path`` as strict JSON: a NaN or Infinity token fails."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def fake_mnist(n: int = 40) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    return ImageDataset("MNIST", images, labels, images[:20], labels[:20], tuple("0123456789"),
                        (0.1307,), (0.3081,), "original MNIST IDX files (md5-verified) from /fake")


def fake_cifar(n: int = 40) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    return ImageDataset("CIFAR-10", images, labels, images[:20], labels[:20], data.CIFAR10_CLASSES,
                        data.CIFAR10_MEAN, data.CIFAR10_STD, MIRROR)


def no_training(*args, **kwargs):
    raise AssertionError("a teacher or student was trained")


# --- 1. Flags: honoured or refused, never ignored --------------------------------------------

@pytest.mark.parametrize("argv", [
    ["regimes", "--no-inference"], ["regimes", "--inference-only"],
    ["cifar10-precision", "--inference-only"], ["algorithms", "--no-inference"],
    ["manifest", "--out", "x.json"], ["cifar10", "--no-inference", "--inference-only"],
    ["mnist", "--time-budget-s", "-1"], ["mnist", "--time-budget-s", "nan"],
    ["mnist", "--time-budget-s", "inf"], ["mnist", "--parts", "cifar"],
    ["regimes", "--one-at-a-time"], ["cifar10", "--one-at-a-time"],
])
def test_a_flag_that_does_not_apply_or_a_bad_budget_is_refused(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize("argv", [["algorithms", "--parts", "cifar,features"], ["anchors", "--parts", ","]])
def test_unknown_parts_are_refused_with_the_known_ones(argv, capsys, tmp_path) -> None:
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "error: --parts" in err and ("mnist-quantized" in err or "hinton" in err)
    assert not (tmp_path / "x.json").exists()


def test_a_bad_budget_is_refused_by_the_library_too() -> None:
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="finite number of seconds >= 0"):
            TimeBudget(bad)
    assert not TimeBudget(None).spent() and TimeBudget(0).spent()


def test_algorithms_honours_the_budget_before_any_teacher(tmp_path, monkeypatch) -> None:
    from test_cifar_experiment import fake_cifar

    from kdlib.experiments import algorithms

    monkeypatch.setattr(algorithms, "train", no_training)
    monkeypatch.setattr(algorithms.Teachers, "train_logits", no_training)
    monkeypatch.setattr(algorithms.cifar, "load_or_train_teacher", no_training)
    spent = algorithms.run_algorithms("quick", out=tmp_path / "a.json", mnist=fake_mnist(), cifar10=fake_cifar(),
                                      time_budget_s=0, progress=False)
    assert spent["rows"] == {}


def test_mnist_honours_the_budget_and_inference_only_before_any_teacher(tmp_path, monkeypatch) -> None:
    from kdlib.experiments import mnist

    monkeypatch.setattr(mnist, "table1_teacher", no_training)
    monkeypatch.setattr(mnist, "train_stacked", no_training)
    monkeypatch.setattr(mnist, "measure_inference", lambda *a, **k: {"teacher": {"latency_ms": 1.0}})
    spent = mnist.run_mnist("quick", out=tmp_path / "a.json", dataset=fake_mnist(), time_budget_s=0,
                            progress=False)
    assert spent["rows"] == {} and "inference" not in spent  # was: every row trained
    timed = mnist.run_mnist("quick", out=tmp_path / "b.json", dataset=fake_mnist(), train_rows=False,
                            progress=False)
    assert timed["rows"] == {} and timed["inference"] == {"teacher": {"latency_ms": 1.0}}


def test_cifar_and_regimes_check_the_budget_before_training_a_teacher(tmp_path, monkeypatch) -> None:
    from kdlib.experiments import cifar, regimes

    monkeypatch.setattr(cifar, "load_or_train_teacher", no_training)
    monkeypatch.setattr(regimes, "cached_teacher", no_training)
    out = cifar.run_cifar("quick", out=tmp_path / "c.json", dataset=fake_cifar(), time_budget_s=0, progress=False)
    assert out["rows"] == {}
    out = regimes.run_regimes("quick", out=tmp_path / "r.json", dataset=fake_mnist(), time_budget_s=0,
                              progress=False)
    assert out["rows"] == {}


def test_the_paper_profile_on_a_cpu_asks_for_an_opt_in(tmp_path, monkeypatch, capsys) -> None:
    from kdlib.experiments import mnist

    monkeypatch.setenv("KDLIB_ALLOW_SLOW", "0")
    with pytest.raises(UsageError, match=r"meant for a CUDA GPU.*--yes.*KDLIB_ALLOW_SLOW=1"):
        mnist.run_mnist("paper", out=tmp_path / "p.json", dataset=fake_mnist())
    assert not (tmp_path / "p.json").exists()
    assert main(["regimes", "--profile", "paper", "--out", str(tmp_path / "p.json")]) == 2
    assert "KDLIB_PROFILE=paper" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(mnist, "run_mnist", lambda *a, **k: seen.append(os.environ["KDLIB_ALLOW_SLOW"]) or {"rows": {}})
    assert main(["mnist", "--profile", "paper", "--yes", "--out", str(tmp_path / "p.json")]) == 0
    assert seen == ["1"]


def test_the_paper_estimate_is_computed_from_the_committed_runs() -> None:
    from kdlib.experiments import paper_cpu_estimate

    if not (REPO / "results" / "cifar10_precision_full.json").exists():
        pytest.skip("no committed results")
    assert paper_cpu_estimate("cifar10").startswith("about ") and " h of training" in paper_cpu_estimate("cifar10")


def test_more_threads_than_cores_are_refused(monkeypatch) -> None:
    from kdlib import threads

    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setenv("KDLIB_THREADS", "1000")
    with pytest.raises(UsageError, match=r"KDLIB_THREADS=1000 .* 2 core.*at most 2"):
        threads.threads_for("mlp")
    monkeypatch.setenv("KDLIB_THREADS", "2")
    assert threads.threads_for("mlp") == 2


# --- 2. Result files: one write path, strict JSON, the file's own shape and data ----------------

def test_a_symlinked_out_writes_its_target(tmp_path) -> None:
    target = tmp_path / "store" / "r.json"
    target.parent.mkdir()
    link = tmp_path / "r.json"
    link.symlink_to(target)
    ResultFile(link, "exp", {}).put("a", {"x": 1})
    ResultFile(link, "exp", {}).put("b", {"x": 2})
    assert link.is_symlink() and set(strict_json(target)["rows"]) == {"a", "b"}


def test_a_private_file_stays_private_and_a_read_only_one_is_refused(tmp_path) -> None:
    path = tmp_path / "r.json"
    ResultFile(path, "exp", {}).put("a", {"x": 1})
    path.chmod(0o600)
    ResultFile(path, "exp", {}).put("b", {"x": 2})
    assert path.stat().st_mode & 0o777 == 0o600  # was rewritten 0644
    path.chmod(0o444)
    with pytest.raises(PathError, match=r"read-only.*chmod u\+w"):
        ResultFile(path, "exp", {})
    with pytest.raises(PathError, match="read-only"):
        atomic_write_json(path, {"x": 1})
    assert path.stat().st_mode & 0o777 == 0o444 and set(strict_json(path)["rows"]) == {"a", "b"}


@pytest.mark.parametrize("content, problem", [
    ([], "JSON list, not an object"),
    ({"experiment": "exp", "provenance": {}, "rows": []}, "'rows' is a list"),
    ({"experiment": "exp", "rows": {}}, "no 'provenance'"),
    ({"experiment": "exp", "provenance": {}, "rows": {"a": 3}}, "row 'a' is a int"),
])
def test_valid_json_of_the_wrong_shape_is_refused_with_its_name(tmp_path, content, problem, capsys) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UsageError, match=f"{path.name} is valid JSON but not a kdlib result file: .*{problem}"):
        ResultFile(path, "exp", {})
    assert main(["mnist", "--out", str(path)]) == 2  # one line, before any data is loaded
    assert "not a kdlib result file" in capsys.readouterr().err


def test_a_result_file_is_always_strict_json(tmp_path) -> None:
    path = tmp_path / "r.json"
    results = ResultFile(path, "exp", {})
    results.put("good", {"accuracy": 0.9})
    with pytest.raises(ValueError, match=r"row 'bad' .* accuracy = nan.*not recorded"):
        results.put("bad", {"accuracy": float("nan")})
    results.put("teacher", {"accuracy": 0.8, "reliability": {"confidence": [float("nan"), 0.5]}})
    stored = strict_json(path)  # was: a NaN token
    assert set(stored["rows"]) == {"good", "teacher"}
    assert stored["rows"]["teacher"]["reliability"]["confidence"] == [None, 0.5]
    assert stored["non_finite_as_null"] == {"teacher": ["reliability.confidence[0]"]}
    with pytest.raises(ValueError, match=r"inference.x is not a finite number"):
        atomic_write_json(tmp_path / "o.json", {"inference": {"x": math.inf}})


def test_resuming_with_another_copy_of_the_data_is_refused(tmp_path) -> None:
    path = tmp_path / "r.json"
    first = ResultFile(path, "exp", {})
    first.use_data_source(MIRROR)
    first.put("teacher", {"accuracy": 0.9})
    again = ResultFile(path, "exp", {})
    again.use_data_source(MIRROR.replace("on every load", "once"))  # the same copy, other words: fine
    with pytest.raises(UsageError, match="made from the course mirror cifar10-jpeg.tgz, but this run reads "
                                         "original CIFAR-10.*KDLIB_DATA"):
        ResultFile(path, "exp", {}).use_data_source(ORIGINAL)
    assert strict_json(path)["provenance"]["data_source"] == MIRROR


def test_resuming_with_a_retrained_teacher_that_differs_is_refused(tmp_path) -> None:
    # a resumed run whose teacher checkpoint was lost trains the teacher again: on another machine
    # that is another network, and its students must not be paired with the stored ones
    path = tmp_path / "r.json"
    teacher, retrained = seeded(lambda: mlp([8]), 0), seeded(lambda: mlp([8]), 1)
    record_teacher(ResultFile(path, "exp", {}), "teacher", teacher, lambda: {"accuracy": 0.9})
    assert strict_json(path)["rows"]["teacher"]["weights_sha256"] == weights_digest(teacher)
    record_teacher(ResultFile(path, "exp", {}), "teacher", seeded(lambda: mlp([8]), 0),
                   lambda: {"accuracy": 0.1})  # the same weights: accepted, the row kept
    with pytest.raises(UsageError, match=r"made with a teacher .* not the one in hand.*KDLIB_CACHE.*--out"):
        record_teacher(ResultFile(path, "exp", {}), "teacher", retrained, lambda: {"accuracy": 0.9})
    assert strict_json(path)["rows"]["teacher"]["accuracy"] == 0.9
    # a row of an older kdlib (no digest): compared by its measurement, within the tolerance
    older = ResultFile(tmp_path / "old.json", "exp", {})
    older.put("teacher", {"accuracy": 0.7923})
    record_teacher(older, "teacher", retrained, lambda: {"accuracy": 0.7925}, ("accuracy", 5e-4))
    with pytest.raises(UsageError, match="accuracy 0.7923.*accuracy 0.7868"):
        record_teacher(older, "teacher", retrained, lambda: {"accuracy": 0.7868}, ("accuracy", 5e-4))


def test_a_lock_that_is_a_folder_or_unusable_is_blamed_with_a_fix(tmp_path, monkeypatch) -> None:
    path = tmp_path / "r.json"
    (tmp_path / "r.json.lock").mkdir()
    with pytest.raises(PathError, match=r"r.json.lock, the lock file .*\(it is a folder.*mv ") as refused:
        ResultFile(path, "exp", {})
    assert "--out" not in str(refused.value)
    (tmp_path / "r.json.lock").rmdir()
    import filelock

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(filelock.FileLock, "acquire", denied)
    with pytest.raises(PathError, match=r"lock file .*Permission denied.*chmod u\+rw"):
        ResultFile(path, "exp", {})


# --- 3. Caches: checkpoints in one file, stale temporaries, the CIFAR-10 arrays ----------------

def filled(value: float) -> torch.nn.Module:
    model = mlp([3], in_features=4)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def test_loads_during_saves_and_simultaneous_saves_stay_consistent(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path))
    key = {"recipe": "toy"}
    path = checkpoint_path("toy", key)
    save_checkpoint(path, filled(0.0), key, {"value": 0.0})
    stop, problems = threading.Event(), []

    def saver(offset: float) -> None:
        for i in range(40):
            save_checkpoint(path, filled(offset + i), key, {"value": offset + i})
        stop.set()

    def loader() -> None:
        while not stop.is_set():
            model = mlp([3], in_features=4)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                info = load_checkpoint(path, model, key)
            if info is None or caught or next(model.parameters())[0, 0].item() != info["value"]:
                problems.append((info, [str(w.message) for w in caught]))

    threads = [threading.Thread(target=saver, args=(0.0,)), threading.Thread(target=saver, args=(1000.0,)),
               threading.Thread(target=loader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []  # was: 516 of 600 loads saw a mismatch and retrained
    model = mlp([3], in_features=4)
    info = load_checkpoint(path, model, key)  # the last save wins, whole
    assert next(model.parameters())[0, 0].item() == info["value"]
    assert not path.with_suffix(".sha256").exists() and not list(tmp_path.rglob("*.tmp"))


def test_temporary_files_of_a_killed_save_are_removed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path))
    key = {"recipe": "toy"}
    path = checkpoint_path("toy", key)
    path.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = socket.gethostname()
    killed = path.with_name(f".{path.name}.{host}-{dead}.0123abcd.tmp")  # its writer is gone
    old = path.with_name(f".{path.name}.otherhost-1.0123abcd.tmp")  # another machine's, a day old
    live = path.with_name(f".{path.name}.{host}-{os.getpid()}.0123abcd.tmp")  # a save in progress
    for temp in (killed, old, live):
        temp.write_bytes(b"half a checkpoint")
    os.utime(old, (time.time() - 86_400, time.time() - 86_400))
    save_checkpoint(path, filled(0.5), key, {"value": 0.5})
    assert not killed.exists() and not old.exists() and live.exists()


@pytest.fixture()
def mirror(tmp_path, monkeypatch) -> Path:
    """A four-image archive in the mirror's layout, with its checksum standing in for the mirror's."""
    files = (("test", "dog"), ("test", "cat"), ("train", "cat"), ("train", "ship"))
    images = [(split, cls, (40 * i, 10, 200 - 40 * i)) for i, (split, cls) in enumerate(files)]
    return fake_cifar_mirror(tmp_path, monkeypatch, images)


def test_the_cifar_cache_is_named_by_decoder_and_format(mirror, monkeypatch) -> None:
    first = data.cifar_cache_path()
    assert data.CIFAR10_JPEG_SHA256[:12] in first.name
    monkeypatch.setattr(data, "jpeg_decoder", lambda: "pillow0-libjpeg0")
    assert data.cifar_cache_path() != first
    monkeypatch.undo()
    monkeypatch.setattr(data, "CIFAR10_CACHE_FORMAT", data.CIFAR10_CACHE_FORMAT + 1)
    assert data.cifar_cache_path() != first


@pytest.mark.parametrize("forge", ["labels", "pixels"])
def test_a_forged_cifar_cache_is_caught_against_the_archive(mirror, forge) -> None:
    honest = data.load_cifar10(mirror.parent, download=False)
    assert "every label and 16 random images" in honest.source
    cache = data.cifar_cache_path()
    with np.load(cache) as npz:
        arrays = {key: npz[key].copy() for key in npz.files}
    if forge == "labels":
        arrays["train_y"] = arrays["train_y"][::-1].copy()
    else:
        arrays["test_x"][1, 0, 0, 0] ^= 0xFF
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    cache.write_bytes(buffer.getvalue())  # a cache with a valid file, and no checksum to match
    with pytest.warns(UserWarning, match="does not match cifar10-jpeg.tgz"):
        again = data.load_cifar10(mirror.parent, download=False)
    assert torch.equal(again.train_labels, honest.train_labels) and torch.equal(again.test_images, honest.test_images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_cifar10(mirror.parent, download=False)  # repaired


# --- 4. An installed (not editable) kdlib ---------------------------------------------------

def test_an_installed_kdlib_never_writes_into_site_packages(tmp_path) -> None:
    site = tmp_path / "env" / "site-packages"
    shutil.copytree(REPO / "kdlib", site / "kdlib", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # a repository around site-packages
    work = tmp_path / "work"
    work.mkdir()
    (work / "results").mkdir()
    (work / "results" / "mnist_full.json").write_text("{}")  # a user's file, not the published one
    manifest = (site / "kdlib" / "experiments" / "published.json").read_bytes()
    script = (
        "import json, urllib.request\n"
        "import kdlib, kdlib.experiments as e\n"
        "from kdlib.results import git_commit\n"
        "def offline(*a, **k): raise OSError('offline')\n"
        "urllib.request.urlretrieve = offline\n"
        "try:\n    e.published_file('mnist_full.json'); served = True\n"
        "except FileNotFoundError:\n    served = False\n"
        "print(json.dumps({'checkout': e.CHECKOUT, 'results': str(e.RESULTS_DIR), 'served': served,\n"
        "                  'commit': git_commit(), 'version': kdlib.__version__}))\n")
    env = {**os.environ, "PYTHONPATH": str(site), "KDLIB_CACHE": str(tmp_path / "cache")}
    env.pop("KDLIB_GIT_COMMIT", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["checkout"] is None and seen["results"] == "results"  # was site-packages/results
    assert not seen["served"]  # a local file is not served as the published one unchecked
    assert seen["commit"] == "unknown" and seen["version"]  # not the enclosing repository's commit
    manifest_run = subprocess.run([sys.executable, "-m", "kdlib.experiments", "manifest"], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=120)
    assert manifest_run.returncode == 2 and "installed as a package" in manifest_run.stderr
    assert "Traceback" not in manifest_run.stderr
    assert (site / "kdlib" / "experiments" / "published.json").read_bytes() == manifest


def test_a_checkout_records_its_version_and_commit() -> None:
    from kdlib.experiments import CHECKOUT

    assert CHECKOUT == REPO
    provenance = new_provenance("c")
    assert provenance["kdlib_version"] and "git_commit" in provenance


# --- 5. The command line: one line for an expected error, a traceback for a bug ----------------

def test_missing_data_is_one_line_and_a_bug_is_a_traceback(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KDLIB_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("KDLIB_DOWNLOAD", "0")
    assert main(["mnist", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST: file") and "Traceback" not in err
    from kdlib.experiments import mnist

    def bug(*args, **kwargs):
        return {}["missing"]

    monkeypatch.setattr(mnist, "run_mnist", bug)
    with pytest.raises(KeyError):
        main(["mnist", "--out", str(tmp_path / "r.json")])


# --- 6. Non-finite teacher logits are blamed on the teacher, not the learning rate -------------

def test_non_finite_teacher_logits_are_blamed_on_the_teacher() -> None:
    x = torch.randn(16, 4)
    y = torch.arange(16) % 3
    logits = torch.randn(16, 3)
    logits[5, 1] = -math.inf  # the log of an averaged probability that underflowed
    with pytest.raises(ValueError, match=r"teacher_logits .* 1 of 16 rows \(first: row 5\).*from the teacher") \
            as refused:
        train(mlp([8], in_features=4, num_classes=3), x, y, TrainConfig(label_weight=0.5), teacher_logits=logits)
    assert "learning rate" not in str(refused.value)


def test_every_committed_result_file_is_strict_json() -> None:
    for path in sorted((REPO / "results").rglob("*.json")):
        strict_json(path)  # was: NaN tokens in two files
