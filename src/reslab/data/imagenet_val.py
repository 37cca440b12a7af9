"""ImageNet's validation set as distributed: one flat folder of 50,000 JPEGs and a label
file, sorted into the class folders every ImageFolder reader expects.

Label files understood:
- Kaggle's `LOC_val_solution.csv`: `ImageId,PredictionString` with the synset first
  (`ILSVRC2012_val_00000001,n01751748 ...`).
- The devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID (1..1000)
  per line, line i for `ILSVRC2012_val_<i:08d>.JPEG`. The IDs are not in sorted-synset
  order: the map comes from `synsets` (a text file, one synset per line in ID order) or
  from the devkit's `data/meta.mat` beside the label file (read with scipy, if installed).
- A plain list: `FILE SYNSET` or `FILE,SYNSET` per line.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from .sources import IMAGE_EXTENSIONS

WNID = re.compile(r"^n\d{8}$")


def read_val_labels(labels: str | Path, synsets: str | Path | None = None) -> dict[str, str]:
    """{image file stem: synset} from any of the label files above."""
    labels = Path(labels)
    lines = [line.strip() for line in _text(labels).splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{labels}: empty label file")
    if lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
        rows = csv.reader(lines[1:])
        out = _unique(
            labels, ((r[0], r[1].split()[0]) for r in rows if len(r) >= 2 and r[1].split())
        )
    elif all(line.isdigit() for line in lines[:100]):
        ids = _id_to_synset(labels, synsets)
        out = {}
        for i, line in enumerate(lines, 1):
            k = int(line)
            if not 1 <= k <= len(ids):
                raise ValueError(f"{labels}: line {i}: ILSVRC2012_ID {k} is not in 1..{len(ids)}")
            out[f"ILSVRC2012_val_{i:08d}"] = ids[k - 1]
    else:
        pairs = []
        for i, line in enumerate(lines, 1):
            parts = re.split(r"[,\s]+", line)
            if len(parts) != 2:
                raise ValueError(f"{labels}: line {i}: expected 'FILE SYNSET', got {line!r}")
            pairs.append((Path(parts[0]).stem, parts[1]))
        out = _unique(labels, pairs)
    bad = [w for w in out.values() if not WNID.match(w)]
    if bad:
        raise ValueError(
            f"{labels}: {len(bad)} labels are not WordNet ids (nXXXXXXXX), e.g. {bad[0]!r}"
        )
    return out


def _text(path: Path) -> str:
    """A label file's text; one that is not UTF-8 (not a label file at all?) is named."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not a text label file (byte 0x{e.object[e.start]:02x} at "
            f"offset {e.start} is not UTF-8)"
        ) from None


def _unique(labels: Path, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{image: synset}; an image listed under two synsets is refused, not settled by order."""
    out: dict[str, str] = {}
    for image, wnid in pairs:
        if out.setdefault(image, wnid) != wnid:
            raise ValueError(
                f"{labels}: image {image} is listed under two labels, {out[image]} and {wnid}"
            )
    return out


def _id_to_synset(labels: Path, synsets: str | Path | None) -> list[str]:
    """Synsets in ILSVRC2012_ID order (ID 1 first)."""
    if synsets is not None:
        ids = [w.split()[0] for w in _text(Path(synsets)).splitlines() if w.strip()]
        if len(ids) < 1000 or not all(WNID.match(w) for w in ids):
            raise ValueError(f"{synsets}: expected 1000 WordNet ids, one per line, in ID order")
        return ids
    meta = labels.parent / "meta.mat"
    if not meta.is_file():
        raise ValueError(
            f"{labels} gives class indices: say which synset each is with "
            "--synsets FILE (one per line, ILSVRC2012_ID order), or keep the "
            "devkit's meta.mat beside it"
        )
    try:
        from scipy.io import loadmat  # optional: only to read the devkit's MATLAB file
    except ImportError:
        raise ValueError(
            f"reading {meta} needs scipy (pip install scipy); or pass --synsets FILE"
        ) from None
    rows = loadmat(str(meta), squeeze_me=True)["synsets"]
    pairs = sorted((int(r[0]), str(r[1])) for r in rows if int(r[4]) == 0)  # leaves only
    return [w for _, w in pairs]


def sort_val(
    flat_dir: str | Path,
    labels: str | Path,
    out: str | Path,
    synsets: str | Path | None = None,
    copy: bool = False,
) -> dict[str, int]:
    """Put every labelled image of `flat_dir` into `out/<synset>/`: hard links where the
    file system allows (no extra space), copies elsewhere. `out` must not exist or be
    empty: nothing there is ever replaced. Returns counts of images and classes."""
    flat_dir, out = Path(flat_dir), Path(out)
    if not flat_dir.is_dir():
        raise ValueError(f"{flat_dir}: not a folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; give a new --out")
    by_stem = {p.stem: p for p in flat_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    truth = read_val_labels(labels, synsets)
    missing = [s for s in truth if s not in by_stem]
    if len(missing) == len(truth):
        raise ValueError(
            f"{flat_dir}: none of the {len(truth)} images that {labels} names "
            f"is there (e.g. {next(iter(truth))})"
        )
    linked = copied = 0
    for stem, wnid in sorted(truth.items()):
        src = by_stem.get(stem)
        if src is None:
            continue
        dst = out / wnid / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not copy:
            try:
                os.link(src, dst)
                linked += 1
                continue
            except OSError:  # another file system, or links not allowed: copy instead
                copy = True
        shutil.copy2(src, dst)
        copied += 1
    unlabelled = len(set(by_stem) - set(truth))
    return {
        "images": linked + copied,
        "linked": linked,
        "copied": copied,
        "classes": len({truth[s] for s in truth if s in by_stem}),
        "missing": len(missing),
        "unlabelled": unlabelled,
    }
