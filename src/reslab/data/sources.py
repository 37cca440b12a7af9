"""Where images come from: CIFAR archives, ImageFolder trees and archives, the cache.

Everything here is about finding, verifying, extracting and indexing data on disk;
augmentation lives in augment.py and batching in loaders.py.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tarfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..storage.downloads import file_digest


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message names the path."""


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
SPLIT_NAMES = ("train", "val", "test")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def file_key(path: Path) -> str:
    """Cheap identity of a file: a changed archive gets a new key without hashing 100s of MB."""
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(os.fsencode(text)).hexdigest()[:16]


def tree_key(root: Path) -> str:
    """Relative paths, sizes and mtimes of every file under root: notices edits, adds, deletes."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = p.stat()
            # os.fsencode: a name that is not valid UTF-8 hashes as its bytes
            h.update(os.fsencode(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n"))
    return h.hexdigest()[:16]


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


# ---------------------------------------------------------------------------- archives


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or Path(name).is_absolute() or ".." in parts:
        raise DatasetError(f"{archive}: unsafe member path {name!r} (absolute or '..'); refusing")
    if member.issym() or member.islnk():
        raise DatasetError(f"{archive}: member {name!r} is a link; refusing to extract links")


def extraction_limits() -> tuple[int, int]:
    """(bytes, files) an archive may extract to: 200 GiB and 5 million files by default
    (ImageNet's training set is ~140 GiB in 1.28M files), so a tar bomb stops early."""
    limits = []
    for name, default, kind in (
        ("RESLAB_MAX_EXTRACT_GB", "200", float),
        ("RESLAB_MAX_EXTRACT_FILES", "5000000", int),
    ):
        text = os.environ.get(name, default)
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise DatasetError(f"${name}={text!r}: give a number > 0 (default {default})")
        limits.append(value)
    return int(limits[0] * 2**30), int(limits[1])


def extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Extract a tar archive under cache_dir/extracted/ and return the folder.

    Only regular files and folders are written, by our own code rather than
    TarFile.extract, so nothing can land outside the folder. The archive is
    extracted into a temporary folder that is renamed into place at the end:
    a folder with the final name is always a complete extraction.
    """
    stem = archive.name.split(".")[0]
    dest = cache_dir / "extracted" / f"{stem}-{file_key(archive)}"
    if dest.is_dir():
        return dest
    max_bytes, max_files = extraction_limits()
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    total, count = 0, 0
    try:
        free = shutil.disk_usage(tmp).free
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member(member, archive)
                total, count = total + max(member.size, 0), count + 1
                if total > max_bytes or count > max_files:
                    raise DatasetError(
                        f"{archive}: more than {max_bytes / 2**30:.0f} GiB or {max_files:,} files "
                        "when extracted; raise RESLAB_MAX_EXTRACT_GB / RESLAB_MAX_EXTRACT_FILES "
                        "if the archive is what you expect"
                    )
                if total > free - (256 << 20):
                    raise DatasetError(
                        f"{archive}: not enough free space in {cache_dir} to extract it "
                        f"({free / 2**30:.1f} GiB free)"
                    )
                target = tmp / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                # device files, fifos etc. are skipped: an image dataset has no use for them
        try:
            os.rename(tmp, dest)
        except OSError:  # another process finished first; its copy is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{archive}: cannot read archive ({e})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def verify_md5(path: Path, md5: str, cache_dir: Path) -> None:
    """Check an official archive once; a stamp keyed by size+mtime avoids re-hashing every run."""
    stamp = cache_dir / "verified" / f"{path.name}-{file_key(path)}.ok"
    if stamp.exists():
        return
    got = md5sum(path)
    if got != md5:
        raise DatasetError(f"{path}: MD5 checksum failed (got {got}, expected {md5})")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


# ---------------------------------------------------------------------------- ImageFolder


@dataclass
class FolderIndex:
    """One split of an ImageFolder tree: file paths and integer labels."""

    root: Path
    paths: list[str]
    labels: list[int]
    classes: list[str]


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _undecodable(path: Path) -> bool:
    """A name that is not valid UTF-8 (Python holds its bad bytes as surrogates): it cannot
    be written into a cache key, a JSON record or a message without failing."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _looks_like_tree(root: Path) -> bool:
    return any((root / s).is_dir() and _class_dirs(root / s) for s in SPLIT_NAMES)


def find_tree(data_dir: Path, cache_dir: Path) -> Path:
    """Resolve data_dir to a folder holding split folders (train/, val/, test/).

    Accepts the tree itself, a tree nested one level (cifar10-jpeg/train/...), an
    archive of either, or a folder holding exactly one such archive.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise DatasetError(f"{data_dir}: no such file or folder")
    if is_archive(data_dir):
        return find_tree(extract_archive(data_dir, cache_dir), cache_dir)
    if _looks_like_tree(data_dir):
        return data_dir
    subdirs = [p for p in _class_dirs(data_dir) if _looks_like_tree(p)]
    if len(subdirs) == 1:
        return subdirs[0]
    archives = sorted(p for p in data_dir.iterdir() if is_archive(p))
    if len(archives) == 1:
        return find_tree(archives[0], cache_dir)
    raise DatasetError(
        f"{data_dir}: expected an ImageFolder tree (<split>/<class>/<image>, split in "
        f"{SPLIT_NAMES}), a folder nesting one, or exactly one .tar/.tar.gz/.tgz of one; "
        f"found {len(subdirs)} trees and {len(archives)} archives"
    )


def index_split(root: Path, split: str) -> FolderIndex | None:
    """Index root/split, or None when the split is absent. Empty class folders are errors."""
    split_dir = root / split
    if not split_dir.is_dir():
        return None
    classes = [p.name for p in _class_dirs(split_dir)]
    if not classes:
        raise DatasetError(f"{split_dir}: no class folders")
    bad = [c for c in classes if _undecodable(split_dir / c)]
    if bad:  # a class name is a label: skipping the folder would renumber the others
        raise DatasetError(
            f"class folder {str(split_dir / bad[0])!r}: its name is not valid UTF-8; rename it"
        )
    paths: list[str] = []
    labels: list[int] = []
    skipped: list[str] = []
    for label, name in enumerate(classes):
        found = [
            p
            for p in (split_dir / name).rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        ]
        skipped += [repr(str(p)) for p in found if _undecodable(p)]
        files = sorted(str(p) for p in found if not _undecodable(p))
        if not files:
            raise DatasetError(f"{split_dir / name}: empty class folder (no image files)")
        paths += files
        labels += [label] * len(files)
    if skipped:  # like an unreadable image: left out, and said
        warnings.warn(
            f"skipped {len(skipped)} image files whose names are not valid UTF-8, "
            f"e.g. {', '.join(skipped[:3])}",
            stacklevel=3,
        )
    return FolderIndex(split_dir, paths, labels, classes)


def index_tree(root: Path, need_train: bool = True) -> dict[str, FolderIndex]:
    """All splits present, with class lists checked to agree; the train split is required
    unless need_train=False (evaluation: a tree of test images is enough)."""
    splits = {s: ix for s in SPLIT_NAMES if (ix := index_split(root, s)) is not None}
    if "train" not in splits and (need_train or not splits):
        raise DatasetError(f"{root}: missing split folder 'train/'")
    first = next(iter(splits.values()))
    for ix in splits.values():
        if ix.classes != first.classes:
            extra = sorted(set(ix.classes) ^ set(first.classes))
            raise DatasetError(
                f"{ix.root}: class folders differ from {first.root} (differences: {extra[:5]})"
            )
    return splits


def open_rgb(path: str, draft_short: Callable[[int, int], int] | None = None) -> Image.Image:
    """Decode any image file to RGB, refusing decompression bombs.

    draft_short(w, h) -> the shorter side the caller needs. JPEGs are then
    DCT-downscaled while decoding (Pillow draft mode) to no less than that,
    which makes decoding large photos several times cheaper.
    """
    with warnings.catch_warnings():
        # A bomb warning is an error for this file rather than a slow decode of a huge image.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(path)
        try:
            if draft_short is not None and img.format == "JPEG":
                w, h = img.size
                t = draft_short(w, h) / min(w, h)
                if t < 1:
                    img.draft("RGB", (math.ceil(w * t), math.ceil(h * t)))
            img.load()  # a single-frame file is closed by load(); no copy needed
        except BaseException:
            img.close()
            raise
        if img.mode == "RGB" and getattr(img, "fp", None) is None:
            return img
        if img.mode.startswith("I"):  # 16/32-bit grey: Pillow's convert would clip at 255
            return _high_depth_to_rgb(img)
        # palette transparency is lost in a direct P->RGB conversion
        rgba = img.convert("RGBA") if img.mode == "P" and "transparency" in img.info else img
        rgb = rgba.convert("RGB") if rgba.mode != "RGB" else rgba.copy()
        img.close()  # multi-frame files (GIF, APNG) keep their file open after load()
        return rgb


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) greyscale image scaled to 8 bits, as RGB."""
    arr = np.asarray(img).astype(np.float64)
    img.close()
    top = 65535.0 if arr.max(initial=0) > 255 else 255.0  # I mode may hold 8-bit values
    grey = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def check_files(paths: list[str]) -> list[str]:
    """Paths that fail a full decode (strict mode runs this at index time)."""
    bad = []
    for p in paths:
        try:
            open_rgb(p, draft_short=lambda w, h: 1)  # 1/8 DCT scale still decodes every block
        except Exception:  # noqa: BLE001 - any decoder failure means the file is unusable
            bad.append(p)
    return bad
