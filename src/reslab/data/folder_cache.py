"""An ImageFolder split decoded once into a uint8 file on disk, memory-mapped for training.

On a few CPU cores an ImageFolder run waits on JPEG decoding (docs/benchmarks.md,
section 2). A split small enough (see `cache_limit_bytes`) is decoded once into
$RESLAB_CACHE/decoded/folder-*.u8: raw (N, side, side, 3) uint8 rows in the split's
file order, each image's shorter side resized to `side` and its centre square kept,
with a JSON header beside it. The file name carries a key of the split's file names,
sizes and mtimes (as the CIFAR cache does), so changed data is decoded again; a file
whose size differs from its header's (truncated, or half-written) is rebuilt. Either
is said on stderr. Training then augments whole batches of rows with tensor ops
(decoded_loader.py) instead of decoding a JPEG per sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..storage.files import atomic_write, remove_stale_temporaries
from .augment import center_view
from .sources import DatasetError, tree_key
from .workers import init_worker

FORMAT = 2  # bump when the file layout or the decoding changes: old files are not reused
LIMIT_ENV = "RESLAB_FOLDER_CACHE_GB"


@dataclass
class DecodedSplit:
    images: np.ndarray  # (N, side, side, 3) uint8, a read-only memory map
    ok: np.ndarray  # (N,) bool: False where the file could not be decoded (row is zeros)
    side: int
    path: Path
    build_s: float  # seconds spent decoding now; 0.0 when the file was already there


def stored_side(image_size: int) -> int:
    """Side (px) of the stored squares: 1.25x the training crop, 160 px for 128 crops.

    The paper's scale augmentation resizes the shorter side to S in [256, 480] (for 224
    crops; [146, 274] for 128) and crops image_size from that: a crop of
    side * image_size / S stored pixels. At 1.25x, the evaluation scale (256) and the
    smaller training scales are downsampled from the stored image, larger S upsample it
    (as the streaming path also does from Imagenette's 224 px files); storing more
    costs (side / image_size)^2 in disk and page cache for detail only the top
    scales would see."""
    return round(image_size * 1.25)


def cache_limit_bytes() -> int:
    """Largest cache built: $RESLAB_FOLDER_CACHE_GB GiB if set (0 turns the cache off),
    else a quarter of physical memory, so that the memory-mapped file stays in the page
    cache beside training (6 GiB on a 24 GiB machine; Imagenette at 160 px is 0.7)."""
    text = os.environ.get(LIMIT_ENV)
    if text is not None:
        try:
            gb = float(text)
        except ValueError:
            raise DatasetError(f"{LIMIT_ENV}={text!r}: not a number of GiB") from None
        if not gb >= 0:
            raise DatasetError(f"{LIMIT_ENV}={text!r}: must be >= 0 (0 turns the cache off)")
        return int(min(gb, 2.0**40) * 2**30)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): a laptop's worth
        return 2 << 30


def _say(msg: str) -> None:
    print(f"reslab: {msg}", file=sys.stderr, flush=True)


class _Rows(Dataset):
    """Decodes one file to its stored square in a DataLoader worker."""

    def __init__(self, paths: list[str], side: int) -> None:
        self.paths, self.side = np.array(paths), side  # numpy: no copy-on-read in workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None]:
        try:
            return i, center_view(str(self.paths[i]), self.side, short=self.side)
        except Exception:  # noqa: BLE001 - any decoder failure means the file is unusable
            return i, None


def _as_list(items: list) -> list:
    return items  # unreadable files give None, which cannot be stacked; the writer loops


def _decode_into(path: Path, paths: list[str], side: int, workers: int) -> np.ndarray:
    """Decode every file into a new raw file at `path`; returns the ok mask."""
    rows = np.memmap(path, np.uint8, "w+", shape=(len(paths), side, side, 3))
    ok = np.zeros(len(paths), dtype=bool)
    # Its own generator: building the cache must not draw from the training RNG, or a
    # seed would train differently on the run that builds it than on one that reuses it.
    loader = DataLoader(
        _Rows(paths, side),
        batch_size=64,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=init_worker,
        generator=torch.Generator(),
    )
    for batch in loader:
        for i, arr in batch:
            if arr is not None:
                rows[i], ok[i] = arr, True
    rows.flush()
    del rows
    return ok


def file_crc32(path: Path) -> int:
    """CRC-32 of a file: cheap enough (about 1 GiB/s) to check a cache at every open,
    and the read warms the page cache that training reads it from anyway."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _names(root: Path, side: int) -> tuple[str, str]:
    """(prefix shared by every cache of this folder at this side, this data's full stem)."""
    where = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    prefix = f"folder-{where}-{side}px-"
    return prefix, f"{prefix}{tree_key(root)}-v{FORMAT}"


def _open(data: Path, head: Path, n: int, side: int) -> tuple[np.ndarray, np.ndarray] | str:
    """The memory map and ok mask, or why the files on disk cannot be used."""
    try:
        meta = json.loads(head.read_text())
        ok = np.ones(n, dtype=bool)
        ok[np.asarray(meta["bad"], dtype=np.int64)] = False
        fits = (meta["n"], meta["side"], meta["format"]) == (n, side, FORMAT)
    except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError) as e:
        return f"its header {head.name} is unreadable ({e})"
    if not fits:
        return f"its header {head.name} describes other data"
    expected = n * side * side * 3
    size = data.stat().st_size if data.exists() else -1
    if size != expected:
        return f"{data} has {size:,} bytes, not {expected:,} (truncated?)"
    if file_crc32(data) != meta.get("crc32"):
        return f"{data} does not match its header's checksum (damaged?)"
    return np.memmap(data, np.uint8, "r", shape=(n, side, side, 3)), ok


def decoded_split(
    root: Path,
    paths: list[str],
    side: int,
    cache_dir: Path,
    *,
    workers: int = 2,
    strict: bool = False,
    limit_bytes: int | None = None,
) -> DecodedSplit | None:
    """The split under `root` (files `paths`, in index order) decoded to side x side
    squares: opened if cached, decoded now if not. None when it is larger than the
    limit (default `cache_limit_bytes()`) or the disk lacks room: stream it instead."""
    size = len(paths) * side * side * 3
    limit = cache_limit_bytes() if limit_bytes is None else limit_bytes
    if size > limit:
        return None
    folder = cache_dir / "decoded"
    prefix, stem = _names(root, side)
    data, head = folder / f"{stem}.u8", folder / f"{stem}.json"
    if head.exists() or data.exists():
        opened = _open(data, head, len(paths), side)
        if not isinstance(opened, str):
            return DecodedSplit(*opened, side, data, 0.0)
        _say(f"the decoded-image cache of {root} is unusable: {opened}; decoding it again")
    try:  # a cache that cannot be written costs speed, not the run
        return _build(root, paths, side, folder, data, head, prefix, workers, strict)
    except DatasetError:
        raise
    except (OSError, ValueError) as e:
        _say(
            f"could not write the decoded-image cache in {folder} ({e}); decoding JPEGs "
            "while training instead"
        )
        return None


def _build(
    root: Path,
    paths: list[str],
    side: int,
    folder: Path,
    data: Path,
    head: Path,
    prefix: str,
    workers: int,
    strict: bool,
) -> DecodedSplit | None:
    size = len(paths) * side * side * 3
    folder.mkdir(parents=True, exist_ok=True)
    stale = [p for p in folder.glob(f"{prefix}*") if p.name not in (data.name, head.name)]
    if stale:  # ours, for an older state of the same folder: a new key means it changed
        _say(f"{root} changed since it was decoded; replacing {len(stale)} cache files")
        for p in stale:
            p.unlink(missing_ok=True)
    # A build killed midway (Ctrl-C, kill -9) leaves .NAME.PID.*.tmp: gone once PID is.
    leftovers = {p.name[1:].split(".u8.")[0] + ".u8" for p in folder.glob(f".{prefix}*.u8.*.tmp")}
    remove_stale_temporaries(folder, tuple(leftovers))
    for old in folder.glob(f".{prefix}*.u8.tmp-*"):  # the same, named before pids were
        old.unlink(missing_ok=True)
    if shutil.disk_usage(folder).free < size + (256 << 20):
        _say(
            f"not enough free space in {folder} for {size / 2**30:.2f} GiB of decoded images; "
            "decoding JPEGs while training instead"
        )
        return None
    _say(
        f"decoding {len(paths):,} images of {root} once into {data} ({size / 2**30:.2f} GiB, "
        f"{side} px; {LIMIT_ENV}=0 turns this off)"
    )
    t0 = time.perf_counter()
    tmp = folder / f".{data.name}.{os.getpid()}.{time.time_ns():x}.tmp"
    try:
        ok = _decode_into(tmp, paths, side, workers)
        bad = np.flatnonzero(~ok)
        if len(bad) and strict:
            raise DatasetError(
                f"{len(bad)} unreadable image files, e.g. {[paths[i] for i in bad[:3]]}"
            )
        os.replace(tmp, data)  # the header comes last: with it, the data file is complete
        meta = {
            "format": FORMAT,
            "n": len(paths),
            "side": side,
            "root": str(root),
            "bad": bad.tolist(),
            "crc32": file_crc32(data),
        }
        atomic_write(head, json.dumps(meta).encode())
    finally:
        tmp.unlink(missing_ok=True)
    opened = _open(data, head, len(paths), side)
    assert not isinstance(opened, str), opened
    return DecodedSplit(*opened, side, data, time.perf_counter() - t0)


def load_rows(images: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """rows of the memory map as one uint8 tensor (B, side, side, 3), read in file order."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows),) + images.shape[1:], dtype=np.uint8)
    out[order] = images[rows[order]]
    return torch.from_numpy(out)
