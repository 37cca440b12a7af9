"""The decoded-image cache of ImageFolder splits, its loader, and memory that stays small."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.data import DatasetError, build_data
from reslab.data.augment import Normalizer, center_view
from reslab.data.decoded_loader import DecodedLoader
from reslab.data.folder_cache import decoded_split, stored_side
from reslab.data.sources import index_split
from reslab.data.synthetic import make_image_folder
from reslab.training.runstate import peak_rss_mb


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two classes of non-square JPEGs plus a greyscale PNG (converted like any file)."""
    root = make_image_folder(tmp_path / "tree", ["a", "b"], 10, (70, 50))
    Image.new("L", (60, 60), 90).save(root / "train" / "a" / "grey.png")
    return root


def _split(root: Path, cache: Path, side: int = 40):
    ix = index_split(root, "train")
    assert ix is not None
    return ix, decoded_split(ix.root, ix.paths, side, cache, workers=0)


def _same_as_decoding(ix, split) -> bool:
    rows = [center_view(p, split.side, short=split.side) for p in ix.paths]
    return np.array_equal(np.asarray(split.images), np.stack(rows))


def test_cache_holds_the_decoded_pixels_and_is_reused(tree: Path, tmp_path: Path) -> None:
    ix, split = _split(tree, tmp_path / "c")
    assert split.images.shape == (21, 40, 40, 3) and split.images.dtype == np.uint8
    assert split.ok.all() and split.build_s > 0 and _same_as_decoding(ix, split)
    again = _split(tree, tmp_path / "c")[1]
    assert again.build_s == 0.0 and again.path == split.path  # opened, not decoded


def test_cache_rebuilds_when_the_data_changes(tree: Path, tmp_path: Path, capfd) -> None:
    old = _split(tree, tmp_path / "c")[1].path
    time.sleep(0.01)  # a new mtime even on coarse clocks
    Image.new("RGB", (70, 50), (200, 10, 10)).save(tree / "train" / "b" / "0003.jpg")
    capfd.readouterr()
    ix, split = _split(tree, tmp_path / "c")
    assert "changed since it was decoded" in capfd.readouterr().err
    assert split.build_s > 0 and split.path != old and not old.exists()
    assert _same_as_decoding(ix, split)


def test_cache_rebuilds_when_truncated(tree: Path, tmp_path: Path, capfd) -> None:
    path = _split(tree, tmp_path / "c")[1].path
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    capfd.readouterr()
    ix, split = _split(tree, tmp_path / "c")
    err = capfd.readouterr().err
    assert "truncated" in err and str(path) in err and len(err.strip().splitlines()) == 2
    assert split.build_s > 0 and _same_as_decoding(ix, split)


def test_unreadable_file_is_left_out_with_one_warning(tree: Path, tmp_path: Path) -> None:
    (tree / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    _, split = _split(tree, tmp_path / "c")
    assert split.ok.sum() == 21 and not split.images[~split.ok].any()
    with pytest.warns(UserWarning, match="skipped 1 unreadable image files"):
        data = build_data(
            "imagefolder",
            tree,
            batch_size=4,
            val_size=0,
            image_size=32,
            workers=0,
            cache_dir=tmp_path / "d",
        )
    assert isinstance(data.train, DecodedLoader) and data.train.num_samples == 21


def test_build_data_uses_the_cache_when_small(tree, tmp_path, monkeypatch) -> None:
    kw = dict(batch_size=4, val_size=4, image_size=32, workers=0, cache_dir=tmp_path / "c")
    data = build_data("imagefolder", tree, **kw)
    assert isinstance(data.train, DecodedLoader) and data.train.images.shape[1] == stored_side(32)
    assert data.train.num_samples == 17 and data.val.num_samples == 4  # val still streams
    assert data.decoded_cache is not None and Path(data.decoded_cache).name.endswith(".u8")
    assert not isinstance(build_data("imagefolder", tree, limit=12, **kw).train, DecodedLoader)
    monkeypatch.setenv("RESLAB_FOLDER_CACHE_GB", "0")
    assert build_data("imagefolder", tree, **kw).decoded_cache is None
    monkeypatch.setenv("RESLAB_FOLDER_CACHE_GB", "lots")
    with pytest.raises(DatasetError, match="RESLAB_FOLDER_CACHE_GB='lots'"):
        build_data("imagefolder", tree, **kw)


@pytest.mark.parametrize("augment", ["paper", "rrc", "none"])
def test_decoded_loader_determinism_resume_sharding(tree, tmp_path, augment: str) -> None:
    def train(**kw):
        return build_data(
            "imagefolder",
            tree,
            batch_size=8,
            val_size=0,
            image_size=32,
            workers=0,
            cache_dir=tmp_path / "c",
            augment=augment,
            channels_last=True,
            **kw,
        ).train

    one = train()
    ref = list(one.epoch(1))
    assert len(ref) == 2 and ref[0][0].shape == (8, 3, 32, 32)
    assert ref[0][0].is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(x).all() for x, _ in ref)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(ref, train().epoch(1)))
    assert torch.equal(next(one.epoch(1, start=1))[0], ref[1][0])
    assert not torch.equal(next(one.epoch(2))[0], ref[0][0])  # a new order every epoch
    ranks = [list(train(rank=r, world_size=2).epoch(1)) for r in (0, 1)]
    for t, (x, y) in enumerate(ref):
        assert torch.equal(torch.cat([ranks[0][t][0], ranks[1][t][0]]), x)
        assert torch.equal(torch.cat([ranks[0][t][1], ranks[1][t][1]]), y)


def test_unaugmented_view_matches_the_streaming_centre_view(tree: Path, tmp_path: Path) -> None:
    """augment="none" from the cache is the streaming centre view, resampled differently."""
    kw = dict(batch_size=21, val_size=0, image_size=32, workers=0, augment="none")
    cached = build_data("imagefolder", tree, cache_dir=tmp_path / "c", **kw).train
    stream = build_data("imagefolder", tree, cache_dir=tmp_path / "c", decoded_cache=False, **kw)
    (a, ya), (b, yb) = next(cached.epoch(0)), next(stream.train.epoch(0))
    order_a, order_b = ya.argsort(stable=True), yb.argsort(stable=True)  # both shuffled
    assert torch.equal(ya[order_a], yb[order_b])
    diff = (a - b).abs().mean().item()  # normalised units: 1 / (255 * 0.225) per grey level
    assert diff < 0.6, diff  # same images; unrelated images differ by ~1


# ---------------------------------------------------------------------------- memory


def test_normalizer_fit_is_exact_and_makes_no_float_copy() -> None:
    x = torch.randint(0, 256, (500, 3, 8, 8), dtype=torch.uint8)
    xf = x.double() / 255
    pm, ch = Normalizer.fit("pixel-mean", x, chunk=64), Normalizer.fit("channel", x, chunk=64)
    assert torch.allclose(pm.mean, xf.mean(0).float())
    assert torch.allclose(pm.std.flatten(), (xf - xf.mean(0)).pow(2).mean().sqrt().float())
    assert torch.allclose(ch.std.flatten(), xf.std((0, 2, 3)).float())
    # 40,000 CIFAR-sized images: 123 MB as uint8, 983 MB as one float64 copy.
    code = textwrap.dedent("""
        import resource, torch
        from reslab.data.augment import Normalizer
        x = torch.randint(0, 256, (40000, 3, 32, 32), dtype=torch.uint8)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for kind in ("pixel-mean", "channel"):
            Normalizer.fit(kind, x)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 200, f"fit grew the peak by {out.stdout.strip()} MiB"


def test_cifar_training_split_stays_uint8(tmp_path: Path) -> None:
    from reslab.data.synthetic import make_cifar_archive

    make_cifar_archive(tmp_path / "c" / "tiny.tar.gz", 300, 0)
    data = build_data(
        "cifar10", tmp_path / "c", batch_size=32, val_size=30, cache_dir=tmp_path / "cache"
    )
    assert data.train.x.dtype == torch.uint8 and data.val.x.dtype == torch.uint8
    assert data.train.x.shape == (270, 3, 32, 32)


def test_peak_rss_counts_child_processes() -> None:
    code = "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); input()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
    try:
        own = peak_rss_mb()
        deadline = time.time() + 30
        while peak_rss_mb() < own + 290 and time.time() < deadline:
            time.sleep(0.05)
        assert peak_rss_mb() >= own + 290
    finally:
        child.communicate("\n", timeout=30)


def test_unwritable_cache_falls_back_to_streaming(tree: Path, tmp_path: Path, capfd) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    ix = index_split(tree, "train")
    assert decoded_split(ix.root, ix.paths, 40, tmp_path / "a-file", workers=0) is None
    assert "could not write the decoded-image cache" in capfd.readouterr().err


def test_a_split_held_on_the_device_gives_the_same_batches(tree: Path, tmp_path: Path) -> None:
    """resident=True (the default on a GPU: the split copied to the device once, batches
    gathered there) yields the very batches the per-step copy from the memory map does."""
    data = build_data(
        "imagefolder",
        tree,
        batch_size=8,
        val_size=0,
        image_size=32,
        workers=0,
        cache_dir=tmp_path / "c",
    )
    streamed = data.train
    assert streamed.resident is None  # a CPU run reads the memory map
    held = DecodedLoader(
        streamed.images,
        streamed.rows,
        streamed.labels.numpy(),
        streamed.norm,
        batch_size=8,
        image_size=32,
        augment="paper",
        seed=0,
        device=torch.device("cpu"),
        resident=True,
    )
    assert held.resident.shape == (len(streamed.rows), *streamed.images.shape[1:])
    for (a, ya), (b, yb) in zip(streamed.epoch(1), held.epoch(1), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
