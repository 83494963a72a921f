"""Fault injection: every way found to get silently wrong results or to lose finished work
(issue: nothing served stale, nothing lost), reproduced on small data, with the behaviour that
replaced it. Permission cases use paths that fail even for root (a file where a folder belongs)."""

from __future__ import annotations

import errno
import hashlib
import http.server
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import kdlib.experiments as experiments
from conftest import fake_cifar_mirror
from kdlib import data
from kdlib.checkpoints import cached_model, checkpoint_path, save_checkpoint
from kdlib.errors import PathError
from kdlib.losses import distillation_loss, kd_divergence, softmax_cross_entropy
from kdlib.models import cifar_resnet, mlp
from kdlib.profile import current_profile
from kdlib.results import ResultFile
from kdlib.train import TrainConfig, train

ROOT_CANNOT_BE_DENIED = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                                           reason="file permissions do not bind root")


def toy_problem(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    return x, (x.flatten(1)[:, :3].sum(1) > 0).long()


# --- 1. Checkpoints: verified on load, retrained on any damage or mismatch --------------------

def test_checkpoints_are_reused_and_damaged_ones_retrained(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path))
    fits = []

    def fit(model):
        fits.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        return {"wall": 1.0}

    key = {"what": "toy", "lr": 0.1}
    first, info = cached_model("toy", key, lambda: mlp([3], in_features=4), fit)
    again, info2 = cached_model("toy", key, lambda: mlp([3], in_features=4), fit)
    assert len(fits) == 1 and info2 == info == {"wall": 1.0}
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    path = checkpoint_path("toy", key)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # corrupt one byte
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum"):
        cached_model("toy", key, lambda: mlp([3], in_features=4), fit)
    assert len(fits) == 2
    assert checkpoint_path("toy", {"what": "toy", "lr": 0.2}) != path  # another recipe, another file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_model("toy", key, lambda: mlp([3], in_features=4), fit)  # repaired: loads silently
    assert len(fits) == 2


def fill(value: float):
    def fit(model: torch.nn.Module) -> dict:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        return {"filled": value}
    return fit


def test_an_impostor_or_truncated_checkpoint_is_retrained_not_served(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path))
    key, other = {"recipe": "a", "data": "mnist sha"}, {"recipe": "b", "data": "mnist sha"}
    build = lambda: mlp([3], in_features=4)  # noqa: E731
    cached_model("toy", key, build, fill(0.5))
    # another model of the same architecture, with a valid checksum, copied over the file
    impostor = checkpoint_path("toy", other)
    save_checkpoint(impostor, build(), other, {"filled": 9.0})
    checkpoint_path("toy", key).write_bytes(impostor.read_bytes())  # the checksum travels inside it
    with pytest.warns(UserWarning, match="made for another configuration"):
        model, info = cached_model("toy", key, build, fill(0.25))
    assert info == {"filled": 0.25} and torch.all(next(model.parameters()) == 0.25)
    # truncated: the warning names the file, the model is trained again
    path = checkpoint_path("toy", key)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match=str(path.name)):
        _, info = cached_model("toy", key, build, fill(0.75))
    assert info == {"filled": 0.75}
    # the data source is part of the key: other data, other file
    assert checkpoint_path("toy", {**key, "data": "cifar sha"}) != path


def test_an_unwritable_checkpoint_cache_warns_and_keeps_the_model(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KDLIB_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="a model checkpoint in the cache.*KDLIB_CACHE"):
        model, info = cached_model("toy", {"k": 1}, lambda: mlp([3], in_features=4), fill(0.5))
    assert info == {"filled": 0.5}


# --- 2 and 3. Result files: profile recorded, concurrent writers, orphans, OS errors ------------

def test_resuming_at_another_profile_is_refused(tmp_path) -> None:
    from kdlib.results import ResultFile

    path = tmp_path / "r.json"
    ResultFile(path, "exp", {"profile": "quick", "scale": {"n": 1}}).put("row", {"a": 1})
    ResultFile(path, "exp", {"profile": "quick", "scale": {"n": 1}})  # same scale: resumes
    with pytest.raises(ValueError, match="profile 'quick'.*'full'"):
        ResultFile(path, "exp", {"profile": "full", "scale": {"n": 1}})
    with pytest.raises(ValueError, match="n = 1"):
        ResultFile(path, "exp", {"profile": "quick", "scale": {"n": 2}})
    ResultFile(path, "exp", {"profile": "quick", "scale": {"n": (1,)[0], "new_setting": 3}})  # added setting: ok


def test_two_concurrent_writers_keep_every_row(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "shared.json"
    script = ("import sys\nfrom kdlib.results import ResultFile\n"
              "r = ResultFile(sys.argv[1], 'exp', {})\n"
              "for i in range(20):\n    r.put(f'{sys.argv[2]}-{i}', {'i': i})\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) == 40 and {"a-19", "b-19"} <= set(rows)


def test_orphaned_temporary_files_of_a_killed_writer_are_removed(tmp_path) -> None:
    path = tmp_path / "r.json"
    orphan = tmp_path / ".r.json.abc123.tmp"
    orphan.write_text("half a file")
    ResultFile(path, "exp", {}).put("row", {"a": 1})
    assert not orphan.exists() and json.loads(path.read_text())["rows"] == {"row": {"a": 1}}


def test_an_unusable_out_path_fails_before_any_training(tmp_path, capsys) -> None:
    from kdlib.experiments.__main__ import main, run

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PathError, match=r"the result file.*Pass a writable --out path"):
        run(["mnist", "--profile", "quick", "--out", str(blocker / "r.json")])  # fails in milliseconds
    assert main(["mnist", "--profile", "quick", "--out", str(blocker / "r.json")]) == 2
    assert "Pass a writable --out path" in capsys.readouterr().err  # one line, no traceback
    with pytest.raises(PathError, match="it is a folder, not a file"):
        ResultFile(tmp_path, "exp", {})


@ROOT_CANNOT_BE_DENIED
def test_a_read_only_out_folder_fails_before_any_training(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PathError, match="the result file"):
            ResultFile(folder / "r.json", "exp", {})
    finally:
        folder.chmod(0o700)


def test_a_full_disk_names_the_result_file_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "r.json"
    results = ResultFile(path, "exp", {})
    results.put("first", {"a": 1})

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("kdlib.results.os.fsync", disk_full)
    with pytest.raises(PathError, match=r"No space left on device.*rerun to resume"):
        results.put("second", {"a": 2})
    assert json.loads(path.read_text())["rows"] == {"first": {"a": 1}}  # the finished row survives
    assert not list(tmp_path.glob("*.tmp"))


# --- 4. Downloads of published files: temporary file, verified, then renamed -----------------

class Server:
    """A local HTTP server that serves ``body``, or drops the connection after half of it."""

    def __init__(self, body: bytes) -> None:
        self.body, self.drop = body, False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body[: len(outer.body) // 2] if outer.drop else outer.body)
                self.wfile.flush()
                if outer.drop:
                    self.connection.shutdown(2)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture()
def remote(tmp_path, monkeypatch):
    body = json.dumps({"rows": {str(i): {"accuracy": 0.9} for i in range(9)}}).encode()
    server = Server(body)
    manifest = tmp_path / "published.json"
    manifest.write_text(json.dumps({"t.json": {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}}))
    monkeypatch.setattr(experiments, "REPOSITORY_RAW", server.url)
    monkeypatch.setattr(experiments, "RESULTS_DIR", tmp_path / "not-a-checkout")
    monkeypatch.setattr(experiments, "MANIFEST", manifest)
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    yield server, body
    server.httpd.shutdown()


def test_an_interrupted_download_is_never_cached_or_served(remote, tmp_path) -> None:
    server, body = remote
    server.drop = True
    with pytest.raises((FileNotFoundError, OSError)):
        experiments.published_file("t.json")
    cache = tmp_path / "cache" / "results"
    assert not (cache / "t.json").exists() and not list(cache.glob("*.tmp"))
    server.drop = False
    assert experiments.published_file("t.json").read_bytes() == body


def test_a_damaged_cached_copy_is_replaced(remote, tmp_path) -> None:
    _, body = remote
    cached = tmp_path / "cache" / "results" / "t.json"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(body[:40])  # a half file left by an older kdlib
    assert experiments.published_file("t.json").read_bytes() == body


def test_the_manifest_matches_the_committed_result_files() -> None:
    """After new results are committed: ``python -m kdlib.experiments manifest``."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "results"], capture_output=True, text=True,
                             cwd=experiments.RESULTS_DIR.parent).stdout.split()
    published = {p.removeprefix("results/") for p in tracked if p.endswith(experiments.PUBLISHED_SUFFIXES)}
    recorded = experiments.manifest()
    assert published and published <= set(recorded), "run: python -m kdlib.experiments manifest"
    for relative in published:
        assert experiments.file_record(experiments.RESULTS_DIR / relative) == recorded[relative], (
            f"results/{relative} changed: run python -m kdlib.experiments manifest")


# --- 5. No silent NaN ---------------------------------------------------------------------------

def test_training_stops_on_a_non_finite_loss_and_rejects_empty_data() -> None:
    x, y = toy_problem(64)
    with pytest.raises(FloatingPointError, match=r"epoch 1 \(steps 1 to 2\).*learning rate"):
        train(mlp([32], in_features=16, num_classes=3), x * 1e30, y, TrainConfig(epochs=2, lr=1e3))
    with pytest.raises(ValueError, match="empty"):
        train(mlp([32], in_features=16, num_classes=3), x[:0], y[:0], TrainConfig())
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=float("inf"))


def test_empty_batches_and_out_of_range_temperatures_raise() -> None:
    z = torch.zeros(0, 10)
    with pytest.raises(ValueError, match="empty"):
        softmax_cross_entropy(z, torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        kd_divergence(z, z, 2.0)
    logits = torch.randn(4, 10)
    for temperature in (1e-39, 1e20, 0.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be a number in"):
            kd_divergence(logits, logits, temperature)
        with pytest.raises(ValueError, match="temperature must be a number in"):
            TrainConfig(temperature=temperature, label_weight=0.5)  # before train() can return NaN weights


def test_extreme_but_valid_inputs_give_finite_accurate_losses() -> None:
    g = torch.Generator().manual_seed(0)
    z, v = torch.randn(8, 10, generator=g) * 3, torch.randn(8, 10, generator=g) * 3
    y = torch.randint(0, 10, (8,), generator=g)
    near_limit = torch.tensor([[3e38, -3e38, 0.0], [-3e38, 3e38, 1.0]])
    assert torch.isfinite(distillation_loss(near_limit, near_limit.flip(1), torch.tensor([0, 1]), 1.0, 0.5))
    assert torch.isfinite(kd_divergence(z.half(), v.half(), 0.01))
    for temperature in (1000.0, 1e4):  # T^2 KL at large T, against a float64 reference
        ours = temperature**2 * kd_divergence(z, v, temperature).item()
        reference = temperature**2 * kd_divergence(z.double(), v.double(), temperature).item()
        assert ours == pytest.approx(reference, rel=1e-5)
    assert torch.isfinite(softmax_cross_entropy(near_limit, torch.tensor([0, 1])))
    assert torch.isfinite(softmax_cross_entropy(z.bfloat16(), y))


def test_training_on_no_data_or_diverging_is_reported() -> None:
    x, y = toy_problem()
    with pytest.raises(ValueError, match="the training set is empty"):
        train(mlp([32], in_features=16, num_classes=3), x[:0], y[:0], TrainConfig())
    with pytest.warns(UserWarning, match="training loss grew"):
        train(mlp([32], in_features=16, num_classes=3), x * 1e3, y, TrainConfig(epochs=3, lr=3.0))


# --- 6. The CIFAR-10 cache -------------------------------------------------------------------

@pytest.fixture()
def tiny_archive(tmp_path, monkeypatch) -> Path:
    """A two-image archive in the mirror's layout, with its checksum standing in for the mirror's."""
    return fake_cifar_mirror(tmp_path, monkeypatch, [("train", "cat", (200, 10, 10)), ("test", "dog", (200, 10, 10))])


def cache_file(tmp_path: Path) -> Path:
    return data.cifar_cache_path()


def test_a_truncated_cache_is_rebuilt(tiny_archive, tmp_path) -> None:
    first = data.load_cifar10(tiny_archive.parent, download=False)
    cache = cache_file(tmp_path)
    cache.write_bytes(cache.read_bytes()[:50])
    with pytest.warns(UserWarning, match="unreadable"):
        again = data.load_cifar10(tiny_archive.parent, download=False)  # was BadZipFile, forever
    assert torch.equal(first.train_images, again.train_images)
    assert np.load(cache)["train_x"].shape == (1, 3, 32, 32)  # and the cache is whole again


def test_the_archive_is_verified_even_when_a_cache_exists(tiny_archive) -> None:
    dataset = data.load_cifar10(tiny_archive.parent, download=False)
    assert "sha256-verified on every load; cached arrays checked against it" in dataset.source
    tiny_archive.write_bytes(tiny_archive.read_bytes()[:-10])
    with pytest.raises(data.DataError, match="corrupt or truncated"):
        data.load_cifar10(tiny_archive.parent, download=False)


def test_an_unwritable_cache_keeps_the_arrays_in_memory(tiny_archive, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("KDLIB_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="decoded CIFAR-10 arrays.*KDLIB_CACHE"):
        dataset = data.load_cifar10(tiny_archive.parent, download=False)
    assert dataset.train_images.shape == (1, 3, 32, 32)


# --- 7. OS errors at the data root ---------------------------------------------------------

def test_an_unreadable_data_file_names_the_data_root_and_the_fix(tmp_path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_FILES:
        (raw / name).mkdir()  # a folder where a file belongs: unreadable even for root
    with pytest.raises(PathError, match=r"a dataset file under the data root.*KDLIB_DATA"):
        data.load_mnist(tmp_path, download=False)


# --- 8. Smaller ones ----------------------------------------------------------------------------

def test_an_empty_profile_variable_counts_as_unset(monkeypatch) -> None:
    for value in ("", "  "):
        monkeypatch.setenv("KDLIB_PROFILE", value)
        assert current_profile() == "quick"


def test_float_class_labels_are_told_to_use_long() -> None:
    with pytest.raises(ValueError, match=r"use labels.long\(\)"):
        softmax_cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 1.0]))


def test_malformed_networks_are_refused_before_torch_sees_them() -> None:
    for bad in (dict(hidden=300), dict(hidden=[2.5]), dict(hidden=[300], num_classes=0)):
        with pytest.raises(ValueError):
            mlp(**bad)  # type: ignore[arg-type]
    for bad in (dict(width=float("inf")), dict(width=float("nan")), dict(num_classes=0)):
        with pytest.raises(ValueError):
            cifar_resnet((1, 1, 1, 1), **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=float("inf"))
