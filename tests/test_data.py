"""CIFAR sources and the in-memory loader, on tiny data the tests generate."""

from __future__ import annotations

import json
import os
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.data import DatasetError, build_data
from reslab.data.augment import Normalizer, crop_flip
from reslab.data.loaders import MemoryLoader
from reslab.data.synthetic import make_cifar_archive, make_image_folder

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    make_cifar_archive(tmp_path / "src" / "tiny-cifar10.tar.gz", n_train=600, n_test=100)
    return tmp_path / "src"


def _build(data_dir: Path, cache: Path, **kw):
    kw = {"batch_size": 64, "val_size": 100, "workers": 0, "cache_dir": cache} | kw
    return build_data(kw.pop("dataset", "cifar10"), data_dir, **kw)


def test_archive_labels_shapes_classes(cifar_dir: Path, tmp_path: Path) -> None:
    data = _build(cifar_dir, tmp_path / "cache")
    assert data.kind == "memory" and data.image_size == 32
    assert data.classes == [f"class{i}" for i in range(10)]
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (500, 100, 100)
    assert len(data.train) == 500 // 64
    x, y = next(data.train.epoch(0))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 0.2 and 0.7 < x.std().item() < 1.3
    # labels survive: the synthetic class colour is recoverable from the test images
    xt, yt = next(data.test.epoch(0))
    assert xt.shape == (100, 3, 32, 32) and set(yt.tolist()) <= set(range(10))
    json.dumps(data.normalization)
    assert np.array(data.normalization["mean"]).shape == (3, 32, 32)


def test_cifar100_and_extracted_folder(tmp_path: Path) -> None:
    arc = make_cifar_archive(tmp_path / "c100.tar.gz", 300, 50, num_classes=100)
    with tarfile.open(arc) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    data = _build(
        tmp_path / "x" / "cifar-100-python", tmp_path / "c", dataset="cifar100", val_size=0
    )
    assert len(data.classes) == 100 and data.val is None and data.test.num_samples == 50
    data2 = _build(
        tmp_path / "x", tmp_path / "c", dataset="cifar100", val_size=0, normalize="channel"
    )
    assert np.array(data2.normalization["mean"]).shape == (3,)


def test_image_tree_forms_nested_and_archived(tmp_path: Path) -> None:
    root = tmp_path / "jpeg" / "cifar10-jpeg"
    make_image_folder(root, ["cat", "dog"], 40, 32, "train")
    make_image_folder(root, ["cat", "dog"], 5, 32, "test", seed=1)
    data = _build(tmp_path / "jpeg", tmp_path / "c", batch_size=16, val_size=10)
    assert data.classes == ["cat", "dog"] and data.test.num_samples == 10
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="cifar10-jpeg")
    data2 = _build(tmp_path / "tree.tar.gz", tmp_path / "c", batch_size=16, val_size=10)
    a, b = next(data.train.epoch(3)), next(data2.train.epoch(3))
    assert torch.equal(a[1], b[1]) and torch.allclose(a[0], b[0], atol=0.1)  # JPEG re-decode


def test_cache_invalidated_when_source_changes(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "tree", ["a", "b"], 20, 32, "train", ext=".png")
    cache = tmp_path / "c"
    before = next(_build(root, cache, batch_size=8, val_size=0).eval_loader("train").epoch(0))[0]
    assert len(list((cache / "decoded").iterdir())) == 1
    first = sorted((root / "train" / "a").iterdir())[0]
    Image.new("RGB", (32, 32), (255, 255, 255)).save(first)
    os.utime(first, (time.time() + 5, time.time() + 5))
    after = next(_build(root, cache, batch_size=8, val_size=0).eval_loader("train").epoch(0))[0]
    assert len(list((cache / "decoded").iterdir())) == 2
    assert not torch.equal(before, after)


def test_md5_failure_and_offline_errors(tmp_path: Path, monkeypatch) -> None:
    make_cifar_archive(tmp_path / "d" / "cifar-10-python.tar.gz", 100, 0)
    with pytest.raises(DatasetError, match="MD5"):
        _build(tmp_path / "d", tmp_path / "c")
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        _build(tmp_path / "empty_ok", tmp_path / "c")

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    (tmp_path / "e").mkdir()
    with pytest.raises(DatasetError, match=r"offline.*put it at .*downloads"):
        _build(tmp_path / "e", tmp_path / "c", download=True)


def test_bad_arguments(cifar_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        _build(cifar_dir, tmp_path, dataset="mnist")
    with pytest.raises(DatasetError, match="divisible"):
        _build(cifar_dir, tmp_path, world_size=3, rank=0)
    with pytest.warns(UserWarning, match="too many for 50 training images; holding out 5"):
        small = _build(cifar_dir, tmp_path, limit=50, batch_size=8)  # 10% held out
    assert small.train.num_samples + small.val.num_samples == 50
    data = _build(cifar_dir, tmp_path, limit=300, val_size=50)
    assert data.train.num_samples == 250 and data.val.num_samples == 50


def test_crop_flip_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8, generator=g)
    oy, ox = torch.randint(0, 5, (16,), generator=g), torch.randint(0, 5, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    out = crop_flip(x, oy, ox, flip, pad=2)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        ref = xp[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)


def _raw_loader(n: int = 2000, **kw) -> MemoryLoader:
    x = torch.full((n, 3, 32, 32), 200, dtype=torch.uint8)
    x[:, :, :, :16] = 100  # left half darker: a flip is visible
    ident = Normalizer("channel", torch.zeros(3, 1, 1), torch.full((3,), 1 / 255))  # x -> x
    kw = {"batch_size": 500, "train": True, "seed": 1} | kw
    return MemoryLoader(x, torch.arange(n), ident, **kw)


def test_augmentation_statistics() -> None:
    xs = torch.cat([x for x, _ in _raw_loader().epoch(0)])
    pad_rows = (xs[:, 0].amax(2) == 0).sum(1)  # rows that are all padding
    pad_cols = (xs[:, 0].amax(1) == 0).sum(1)
    assert pad_rows.max() <= 4 and pad_cols.max() <= 4
    assert set(pad_rows.tolist()) == set(range(5))  # offsets 0..8 all drawn
    left, right = xs[:, 0, 8:24, 6:14].mean((1, 2)), xs[:, 0, 8:24, 18:26].mean((1, 2))
    flipped = (left > right).float().mean().item()
    assert 0.45 < flipped < 0.55


def _mirrored(loader: MemoryLoader, epoch: int) -> torch.Tensor:
    """(N,) bool by image index: was the image mirrored in this epoch?"""
    out = torch.zeros(loader.num_samples, dtype=torch.bool)
    for x, y in loader.epoch(epoch):
        out[y] = x[:, 0, :, :16].float().mean((1, 2)) > x[:, 0, :, 16:].float().mean((1, 2))
    return out


def test_alternate_flip_mirrors_each_image_every_other_epoch() -> None:
    loader = _raw_loader(pad=0, alternate_flip=True)
    epochs = [_mirrored(loader, e) for e in range(4)]
    assert 0.45 < epochs[0].float().mean().item() < 0.55  # a fair coin once per image...
    for a, b in zip(epochs, epochs[1:]):
        assert torch.equal(a, ~b)  # ...then mirrored in exactly the other epochs
    coins = [_mirrored(_raw_loader(pad=0), e) for e in range(2)]
    assert not torch.equal(coins[0], ~coins[1])  # the default draws a coin every epoch


def test_determinism_resume_and_sharding() -> None:
    full = _raw_loader()
    a, b = list(full.epoch(2)), list(full.epoch(2))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], next(full.epoch(3))[1])
    resumed = list(full.epoch(2, start=2))
    assert len(resumed) == 2 and torch.equal(resumed[0][0], a[2][0])
    ranks = [list(_raw_loader(rank=r, world_size=2).epoch(2)) for r in (0, 1)]
    for t, (x, y) in enumerate(a):
        assert torch.equal(torch.cat([ranks[0][t][0], ranks[1][t][0]]), x)
        assert torch.equal(torch.cat([ranks[0][t][1], ranks[1][t][1]]), y)


def test_eval_views_and_channels_last(cifar_dir: Path, tmp_path: Path) -> None:
    data = _build(cifar_dir, tmp_path, channels_last=True, image_size=64)
    x, _ = next(data.train.epoch(0))
    assert x.shape == (64, 3, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    assert next(data.eval_loader("val", "ten-crop").epoch(0))[0].shape == (100, 10, 3, 64, 64)
    assert next(data.eval_loader("test", "full", 448).epoch(0))[0].shape == (100, 3, 128, 128)
    with pytest.raises(ValueError):
        data.eval_loader("val", "five-crop")


@pytest.mark.skipif(
    not (SHARED / "cifar10-train-jpeg.tar.gz").exists(), reason="../shared/datasets absent"
)
def test_real_cifar10_jpeg() -> None:
    # default cache: the 50k-image decode is paid once per machine, not per test run
    data = build_data("cifar10", SHARED / "cifar10-train-jpeg.tar.gz", batch_size=128, workers=0)
    assert data.classes[:3] == ["airplane", "automobile", "bird"]
    assert (data.train.num_samples, data.val.num_samples, data.test) == (45000, 5000, None)


def test_truncated_decoded_cache_is_rebuilt(tiny_cifar: Path, tmp_path: Path) -> None:
    from reslab.data import build_data

    first = build_data("cifar10", tiny_cifar, batch_size=32, val_size=64, cache_dir=tmp_path)
    (cached,) = (tmp_path / "decoded").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:1000])  # a crash mid-copy, a full disk...
    with pytest.warns(UserWarning, match="cache .* is unreadable.*rebuilding"):
        again = build_data("cifar10", tiny_cifar, batch_size=32, val_size=64, cache_dir=tmp_path)
    assert torch.equal(first.train.x, again.train.x)
    build_data("cifar10", tiny_cifar, batch_size=32, val_size=64, cache_dir=tmp_path)  # whole again
