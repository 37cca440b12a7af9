"""ImageFolder sources, safe extraction, bad input and the worker-decoding loader."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.data import DatasetError, build_data
from reslab.data.augment import scaled
from reslab.data.sources import extract_archive
from reslab.data.synthetic import make_image_folder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "datasets"


def _build(root: Path, tmp: Path, **kw):
    kw = {
        "batch_size": 8,
        "val_size": 4,
        "workers": 0,
        "cache_dir": tmp / "cache",
        "image_size": 32,
        "decoded_cache": False,  # these tests are about the streaming (JPEG-decoding) loader
    } | kw
    return build_data("imagefolder", root, **kw)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """Two classes of 12 small JPEGs, plus odd modes and one corrupt file."""
    root = make_image_folder(tmp_path / "tree", ["cat", "dog"], 12, (48, 40))
    d = root / "train" / "cat"
    Image.new("L", (40, 40), 128).save(d / "gray.png")
    Image.new("RGBA", (40, 40), (1, 2, 3, 0)).save(d / "rgba.png")
    Image.new("P", (40, 40), 3).save(d / "palette.gif")
    Image.new("CMYK", (40, 40), (0, 50, 100, 0)).save(d / "cmyk.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (d / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_modes_and_corrupt_file_warns_once(messy: Path, tmp_path: Path) -> None:
    data = _build(messy, tmp_path, val_size=0, batch_size=29)
    assert data.train.num_samples == 29 and data.classes == ["cat", "dog"]
    with pytest.warns(UserWarning) as rec:
        batches = list(data.train.epoch(0))
    # Said at once (with the file), then counted when the epoch ends.
    assert [str(w.message)[:26] for w in rec] == [
        "skipping unreadable image ",
        "skipped 1 unreadable image",
    ]
    assert "broken.jpg" in str(rec[0].message) and batches[0][0].shape == (29, 3, 32, 32)
    with pytest.raises(DatasetError, match="broken.jpg"):
        _build(messy, tmp_path, val_size=0, strict=True)


def test_decompression_bomb_is_a_bad_file(messy: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # every 48x40 image is now a "bomb"
    data = _build(messy, tmp_path, val_size=0, batch_size=4)
    with pytest.raises(DatasetError, match="unreadable images in a row"):
        list(data.train.epoch(0))


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("tree/train/a/0.txt")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"x"))
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_malicious_archive_refused(tmp_path: Path, kind: str) -> None:
    m = tarfile.TarInfo({"dotdot": "../escape", "absolute": "/tmp/abs-escape"}.get(kind, "tree/x"))
    if kind == "symlink":
        m.type, m.linkname = tarfile.SYMTYPE, "/etc"
    if kind == "hardlink":
        m.type, m.linkname = tarfile.LNKTYPE, "/etc/passwd"
    arc = _tar_with(tmp_path / "evil.tar", m)
    with pytest.raises(DatasetError, match="evil.tar"):
        extract_archive(arc, tmp_path / "cache")
    assert not (tmp_path / "cache" / "escape").exists() and not (tmp_path / "escape").exists()
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []  # temp folder cleaned up


def test_extraction_is_atomic_and_reused(messy: Path, tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "t.tgz", "w:gz") as tar:
        tar.add(messy / "train", arcname="train")
    # a leftover temp folder from an interrupted run is never taken for a finished one
    (tmp_path / "cache" / "extracted" / ".t-dead.tmp-1234").mkdir(parents=True)
    a = extract_archive(tmp_path / "t.tgz", tmp_path / "cache")
    assert extract_archive(tmp_path / "t.tgz", tmp_path / "cache") == a
    assert (a / "train" / "cat" / "gray.png").is_file()
    assert _build(tmp_path / "t.tgz", tmp_path, val_size=0).train.num_samples == 29


def test_structural_errors_name_the_path(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "t", ["a", "b"], 2, 16)
    (root / "train" / "c").mkdir()
    with pytest.raises(DatasetError, match=r"train/c: empty class folder"):
        _build(root, tmp_path)
    (root / "train" / "c").rmdir()
    make_image_folder(root, ["a", "z"], 2, 16, split="val")
    with pytest.raises(DatasetError, match=r"t/val: class folders differ"):
        _build(root, tmp_path)
    only_val = make_image_folder(tmp_path / "v", ["a"], 2, 16, split="val")
    with pytest.raises(DatasetError, match="missing split folder 'train/'"):
        _build(only_val, tmp_path)


def test_determinism_workers_resume_sharding(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "t", ["a", "b", "c"], 12, (70, 50))
    kw = {"val_size": 4, "batch_size": 8, "augment": "paper", "image_size": 32}
    one = _build(root, tmp_path, **kw).train
    ref = list(one.epoch(1))
    assert len(ref) == 4
    par = list(_build(root, tmp_path, workers=2, **kw).train.epoch(1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, par))
    assert not torch.equal(ref[0][0], next(one.epoch(2))[0])
    assert torch.equal(next(one.epoch(1, start=3))[0], ref[3][0])
    ranks = [
        list(_build(root, tmp_path, rank=r, world_size=2, **kw).train.epoch(1)) for r in (0, 1)
    ]
    for t, (x, y) in enumerate(ref):
        assert torch.equal(torch.cat([ranks[0][t][0], ranks[1][t][0]]), x)
        assert torch.equal(torch.cat([ranks[0][t][1], ranks[1][t][1]]), y)


def test_views_and_scaling(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "t", ["a", "b"], 6, (200, 150))
    data = _build(root, tmp_path, image_size=64, augment="rrc", channels_last=True)
    x, y = next(data.train.epoch(0))
    assert x.shape == (8, 3, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    assert next(data.val.epoch(0))[0].shape == (4, 3, 64, 64)
    assert next(data.eval_loader("val", "ten-crop").epoch(0))[0].shape == (4, 10, 3, 64, 64)
    full = next(data.eval_loader("val", "full", 448).epoch(0))[0]
    assert full.shape == (1, 3, 128, round(128 * 200 / 150))  # shorter side 448 * 64/224
    assert (scaled(256, 128), scaled(480, 128)) == (146, 274)
    assert data.normalization["kind"] == "channel"


def test_benchmark_quick_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "data_pipeline.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    assert "img/s" in out.stdout and "x baseline" in out.stdout


@pytest.mark.skipif(
    not (SHARED / "imagenette-224-train.tar").exists(), reason="../shared/datasets absent"
)
def test_real_imagenette(tmp_path: Path) -> None:
    data = build_data(
        "imagenette",
        SHARED / "imagenette-224-train.tar",
        batch_size=16,
        val_size=16,
        limit=64,
        workers=0,
    )
    assert data.classes[0] == "n01440764" and data.train.num_samples == 48
    x, y = next(data.train.epoch(0))
    assert x.shape == (16, 3, 224, 224) and torch.isfinite(x).all()


def test_first_bad_image_is_reported_before_the_epoch_ends(messy: Path, tmp_path: Path) -> None:
    data = _build(messy, tmp_path, val_size=0, batch_size=4)
    it = data.train.epoch(0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        seen = 0
        for _ in it:
            seen += 1
            if rec:
                break
    assert rec and "broken.jpg" in str(rec[0].message) and seen <= len(data.train)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    from reslab.data.sources import open_rgb

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = np.asarray(open_rgb(str(tmp_path / "deep.png")))
    assert rgb.shape == (64, 64, 3) and rgb.min() == 0 and rgb.max() == 255
    assert 120 < rgb.mean() < 135  # a full ramp, not Pillow's all-white clip


def test_extraction_limits(messy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arc = tmp_path / "tree.tar"
    with tarfile.open(arc, "w") as tar:
        tar.add(messy, arcname="tree")
    monkeypatch.setenv("RESLAB_MAX_EXTRACT_FILES", "5")
    with pytest.raises(DatasetError, match="more than .* 5 files when extracted"):
        extract_archive(arc, tmp_path / "cache")
    monkeypatch.setenv("RESLAB_MAX_EXTRACT_FILES", "100")
    monkeypatch.setenv("RESLAB_MAX_EXTRACT_GB", "0.00001")  # ~10 kB
    with pytest.raises(DatasetError, match="GiB"):
        extract_archive(arc, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "extracted").iterdir())  # nothing half-extracted


def test_train_and_val_folders_are_used_as_given(tmp_path: Path) -> None:
    """ImageNet's layout: val/ is the validation set; nothing is carved out of train/."""
    root = make_image_folder(tmp_path / "t", ["a", "b"], 9, 24)
    make_image_folder(root, ["a", "b"], 3, 24, split="val")
    data = _build(root, tmp_path, val_size=5000, batch_size=4)  # 5000: the recipe's default
    assert data.train.num_samples == 18 and data.val.num_samples == 6


def test_val_size_larger_than_the_data_is_capped(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "t", ["a", "b"], 15, 24)
    with pytest.warns(
        UserWarning, match="val_size=5000 is too many for 30 training images; holding out 3"
    ):
        data = _build(root, tmp_path, val_size=5000, batch_size=4)
    assert data.train.num_samples == 27 and data.val.num_samples == 3
