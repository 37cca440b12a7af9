"""ImageNet's flat validation folder with its label file, sorted into class folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from reslab.cli import main
from reslab.data.imagenet_val import read_val_labels, sort_val

# ILSVRC2012_IDs are not in sorted-synset order: ID 1 is n02119789 (kit fox).
SYNSETS = ["n02119789", "n02100735", "n01440764"]


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    """Six validation images named as distributed, plus a stray file without a label."""
    folder = tmp_path / "val-flat"
    folder.mkdir()
    for i in range(1, 7):
        Image.new("RGB", (40, 30), (i * 30, 0, 0)).save(folder / f"ILSVRC2012_val_{i:08d}.JPEG")
    Image.new("RGB", (40, 30)).save(folder / "stray.JPEG")
    return folder


def _truth(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    ids = [1, 3, 2, 3, 1, 2]  # the devkit's ground truth: one ID per image, in file order
    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("".join(f"{k}\n" for k in ids))
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("\n".join(SYNSETS + [f"n{90000000 + i:08d}" for i in range(997)]) + "\n")
    want = {f"ILSVRC2012_val_{i:08d}": SYNSETS[k - 1] for i, k in enumerate(ids, 1)}
    return gt, synsets, want


def test_every_label_format_reads_the_same(tmp_path: Path) -> None:
    gt, synsets, want = _truth(tmp_path)
    assert read_val_labels(gt, synsets) == want
    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text(
        "ImageId,PredictionString\n"
        + "".join(f"{stem},{w} 10 20 100 200 {w} 5 5 50 50\n" for stem, w in want.items())
    )
    assert read_val_labels(kaggle) == want
    plain = tmp_path / "labels.txt"
    plain.write_text("".join(f"{stem}.JPEG {w}\n" for stem, w in want.items()))
    assert read_val_labels(plain) == want
    with pytest.raises(ValueError, match="--synsets FILE"):
        read_val_labels(gt)  # indices without a map: say how to give one
    bad = tmp_path / "bad.txt"
    bad.write_text("a.JPEG tench\n")
    with pytest.raises(ValueError, match="not WordNet ids"):
        read_val_labels(bad)


def test_sort_val_hard_links_into_class_folders(flat: Path, tmp_path: Path) -> None:
    gt, synsets, want = _truth(tmp_path)
    out = tmp_path / "imagenet" / "val"
    n = sort_val(flat, gt, out, synsets=synsets)
    assert n == {"images": 6, "linked": 6, "copied": 0, "classes": 3, "missing": 0, "unlabelled": 1}
    for stem, wnid in want.items():
        dst = out / wnid / f"{stem}.JPEG"
        assert dst.samefile(flat / f"{stem}.JPEG")  # a hard link: no second copy
    assert sorted(p.name for p in out.iterdir()) == sorted(SYNSETS)
    with pytest.raises(ValueError, match="not an empty folder"):
        sort_val(flat, gt, out, synsets=synsets)  # never into a folder that holds files


def test_cli_sort_val_then_train_tree_uses_it(flat: Path, tmp_path: Path, capsys) -> None:
    from reslab.data import build_data
    from reslab.data.synthetic import make_image_folder

    gt, synsets, _ = _truth(tmp_path)
    root = make_image_folder(tmp_path / "imagenet", SYNSETS, 4, 24)
    out = root / "val"
    assert (
        main(
            [
                "sort-val",
                str(flat),
                "--labels",
                str(gt),
                "--synsets",
                str(synsets),
                "--out",
                str(out),
                "--copy",
            ]
        )
        == 0
    )
    assert "6 images in 3 class folders" in capsys.readouterr().out
    data = build_data(
        "imagefolder",
        root,
        batch_size=4,
        val_size=5000,
        workers=0,
        image_size=24,
        cache_dir=tmp_path / "cache",
    )
    assert data.train.num_samples == 12 and data.val.num_samples == 6
    assert main(["sort-val", str(flat), "--labels", str(gt), "--out", str(tmp_path / "x")]) == 2
    assert "--synsets FILE" in capsys.readouterr().err
