"""kdlib.export: a model saved with its preprocessing gives the same logits from raw images, and
refuses what it cannot save or check."""

from __future__ import annotations

import zipfile

import pytest
import torch

from kdlib.data import ImageDataset, normalize
from kdlib.errors import UsageError
from kdlib.export import load_model, save_model
from kdlib.features import tap
from kdlib.models import cifar_resnet, mlp, seeded


def images(shape: tuple[int, ...], n: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def dataset(shape: tuple[int, ...], mean: tuple[float, ...], std: tuple[float, ...]) -> ImageDataset:
    x = images(shape)
    return ImageDataset("toy", x, torch.arange(6) % 10, x, torch.arange(6) % 10, tuple(map(str, range(10))),
                        mean, std, "random pixels")


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_saved_model_takes_raw_images_and_gives_the_models_logits(tmp_path, kind: str) -> None:
    if kind == "mlp":
        data, model = dataset((1, 28, 28), (0.1307,), (0.3081,)), seeded(lambda: mlp([32]), 0)
    else:
        data = dataset((3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
        model = seeded(lambda: cifar_resnet([1, 1, 1, 1], width=0.125), 0)
    model.train()  # save_model exports an eval-mode copy and leaves the model as it was
    path = save_model(tmp_path / "model.pt2", model, data)
    assert model.training
    loaded, info = load_model(path)
    raw = images(tuple(info["image_shape"]), n=5)  # another batch size than the example's
    model.eval()
    with torch.no_grad():
        expected = model(normalize(raw, data.mean, data.std))
        assert torch.allclose(loaded(raw), expected, atol=1e-5)
    assert info["classes"] == list(data.classes) and info["mean"] == list(data.mean)
    with torch.no_grad():  # anyone with PyTorch loads it, without kdlib
        plain = torch.export.load(path).module()
        assert torch.allclose(plain(raw), expected, atol=1e-5)


def test_saved_model_refuses_normalised_or_misshapen_input(tmp_path) -> None:
    data = dataset((1, 28, 28), (0.1307,), (0.3081,))
    loaded, _ = load_model(save_model(tmp_path / "m.pt2", mlp([8]), data))
    with pytest.raises(UsageError, match="raw uint8 images"):
        loaded(normalize(images((1, 28, 28)), data.mean, data.std))
    with pytest.raises(UsageError, match=r"\(N, 1, 28, 28\)"):
        loaded(images((1, 14, 14)))


def test_a_model_with_a_hook_attached_is_refused(tmp_path) -> None:
    model = cifar_resnet([1, 1, 1, 1], width=0.125)
    data = dataset((3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    with tap(model, "stage2"):
        with pytest.raises(UsageError, match="hook"):
            save_model(tmp_path / "m.pt2", model, data)
    save_model(tmp_path / "m.pt2", model, data)  # the tap removed on leaving: saved


def test_changed_weights_and_foreign_files_are_refused(tmp_path) -> None:
    data = dataset((1, 28, 28), (0.1307,), (0.3081,))
    path = save_model(tmp_path / "m.pt2", mlp([8]), data)
    with zipfile.ZipFile(path) as archive:
        entries = {item.filename: archive.read(item.filename) for item in archive.infolist()}
    meta = next(name for name in entries if name.endswith("kdlib.json"))
    entries[meta] = entries[meta].replace(b'"weights_sha256": "', b'"weights_sha256": "0')
    changed = tmp_path / "changed.pt2"
    with zipfile.ZipFile(changed, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(UsageError, match="do not match the checksum"):
        load_model(changed)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a model")
    with pytest.raises(UsageError, match="not a model saved by kdlib"):
        load_model(junk)


def test_the_file_holds_two_sample_images_not_the_test_set(tmp_path) -> None:
    """A slice of the test set is a view of all of it; the saved file must not carry it."""
    x = torch.randint(0, 256, (5000, 1, 28, 28), dtype=torch.uint8)
    big = ImageDataset("toy", x[:10], torch.zeros(10, dtype=torch.long), x, torch.zeros(5000, dtype=torch.long),
                       tuple(map(str, range(10))), (0.1307,), (0.3081,), "random pixels")
    path = save_model(tmp_path / "model.pt2", seeded(lambda: mlp([32]), 0), big)
    assert path.stat().st_size < 1_000_000  # the 5,000 images alone are 3.9 MB


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch) -> None:
    data = dataset((1, 28, 28), (0.1307,), (0.3081,))
    path = save_model(tmp_path / "model.pt2", seeded(lambda: mlp([32]), 0), data)
    before = path.read_bytes()
    real_save = torch.export.save

    def dies_half_way(program, f, **kwargs):
        real_save(program, f, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        save_model(path, seeded(lambda: mlp([32]), 1), data)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]  # no temporary file left behind
    load_model(path)


def test_a_new_file_honours_the_umask(tmp_path) -> None:
    import os
    import stat

    from kdlib.results import atomic_write_bytes

    old = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "private.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
