"""CIFAR-10/100 from the official python archive, its extracted folder, or a JPEG ImageFolder.

Whatever the form, the result is decoded once into uint8 tensors (N, 3, 32, 32)
and cached on disk under a key derived from the source, so a changed source is
decoded again and an unchanged one loads in well under a second.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import one_line
from ..storage.downloads import DownloadError, download
from ..storage.files import atomic_write
from .sources import (
    DatasetError,
    check_files,
    file_key,
    find_tree,
    index_tree,
    is_archive,
    open_rgb,
    tree_key,
    verify_md5,
)


@dataclass(frozen=True)
class CifarSpec:
    archive: str  # the official file name
    folder: str  # the folder inside it
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes


SPECS = {
    "cifar10": CifarSpec(
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": CifarSpec(
        "cifar-100-python.tar.gz",
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",),
        "test",
        "meta",
        b"fine_labels",
        b"fine_label_names",
    ),
}


@dataclass
class MemorySource:
    train_x: torch.Tensor  # (N, 3, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    classes: list[str]
    origin: str  # what was read, for messages


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The CIFAR pickles hold only dicts, bytes, lists and numpy arrays; refuse anything else
    so a doctored archive cannot run code."""

    _ALLOWED = {("multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        short = module.rsplit(".", 1)[-1]
        if module.startswith("numpy") and (short, name) in self._ALLOWED:
            # numpy 2 moved numpy.core to numpy._core; old pickles name the old module
            for mod in (module.replace("numpy.core", "numpy._core"), module):
                try:
                    return getattr(importlib.import_module(mod), name)
                except (ImportError, AttributeError):
                    continue
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles store bytes
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{where}: not a CIFAR pickle ({e})") from e


def _batches_to_tensors(batches: list[dict], spec: CifarSpec, where: str):
    try:
        x = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        y = np.concatenate([np.asarray(b[spec.label_key], dtype=np.int64) for b in batches])
    except KeyError as e:
        raise DatasetError(f"{where}: CIFAR batch lacks key {e}") from e
    return torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(y)


def _read_batches(read, spec: CifarSpec, where: str) -> MemorySource:
    """read(name) -> bytes of a file in the batches folder (from a folder or an archive)."""
    meta = _unpickle(read(spec.meta_file), f"{where}/{spec.meta_file}")
    classes = [c.decode() if isinstance(c, bytes) else c for c in meta[spec.names_key]]
    train = [_unpickle(read(f), f"{where}/{f}") for f in spec.train_files]
    tx, ty = _batches_to_tensors(train, spec, where)
    test_x = test_y = None
    try:
        test = _unpickle(read(spec.test_file), f"{where}/{spec.test_file}")
        test_x, test_y = _batches_to_tensors([test], spec, where)
    except FileNotFoundError:
        pass
    return MemorySource(tx, ty, test_x, test_y, classes, where)


def _from_folder(folder: Path, spec: CifarSpec) -> MemorySource:
    def read(name: str) -> bytes:
        p = folder / name
        if not p.exists():
            raise FileNotFoundError(p) if name == spec.test_file else DatasetError(f"{p}: missing")
        return p.read_bytes()

    return _read_batches(read, spec, str(folder))


def _from_archive(archive: Path, spec: CifarSpec) -> MemorySource:
    # Read the pickles straight out of the tar: nothing is extracted, so nothing can escape.
    try:
        with tarfile.open(archive, "r:*") as tar:
            files = {}
            for m in tar:
                name = Path(m.name)
                if m.isfile() and len(name.parts) == 2 and name.parts[0] == spec.folder:
                    files[name.parts[1]] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{archive}: cannot read archive ({e})") from e

    def read(name: str) -> bytes:
        if name not in files:
            if name == spec.test_file:
                raise FileNotFoundError(name)
            raise DatasetError(f"{archive}: member {spec.folder}/{name} missing")
        return files[name]

    return _read_batches(read, spec, str(archive))


def _decode_split(paths: list[str], labels: list[int], strict: bool, size: int = 32):
    """Decode image files to a uint8 tensor, skipping unreadable ones with one warning."""
    x = np.empty((len(paths), 3, size, size), dtype=np.uint8)  # written in place: no copies
    keep = np.ones(len(paths), dtype=bool)
    bad: list[str] = []
    for i, p in enumerate(paths):
        try:
            img = open_rgb(p)
        except Exception:  # noqa: BLE001 - any decoder failure means the file is unusable
            bad.append(p)
            keep[i] = False
            continue
        if img.size != (size, size):
            img = img.resize((size, size), resample=3)  # bicubic; CIFAR trees are 32x32 anyway
        x[i] = np.asarray(img).transpose(2, 0, 1)
    if bad and strict:
        raise DatasetError(f"{len(bad)} unreadable image files, e.g. {bad[:3]}")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image files, e.g. {bad[:3]}", stacklevel=3)
    y = np.asarray(labels, dtype=np.int64)[keep]
    return torch.from_numpy(x if keep.all() else x[keep]), torch.from_numpy(y)


def _from_tree(root: Path, strict: bool) -> MemorySource:
    splits = index_tree(root, need_train=False)  # test/ alone: enough to evaluate on
    if strict:
        bad = [p for ix in splits.values() for p in check_files(ix.paths)]
        if bad:
            raise DatasetError(f"{root}: {len(bad)} unreadable image files, e.g. {bad[:3]}")
    tr = splits.get("train")
    tx, ty = _decode_split(tr.paths, tr.labels, strict) if tr else _decode_split([], [], strict)
    test = splits.get("test") or splits.get("val")
    sx, sy = _decode_split(test.paths, test.labels, strict) if test else (None, None)
    return MemorySource(tx, ty, sx, sy, (tr or test).classes, str(root))


def _cached(key: str, cache_dir: Path, make) -> MemorySource:
    path = cache_dir / "decoded" / f"{key}.pt"
    if path.exists():
        try:
            return MemorySource(**torch.load(path, weights_only=True))
        except Exception as e:  # noqa: BLE001 - truncated, foreign or damaged: rebuild it
            warnings.warn(
                f"decoded-data cache {path} is unreadable ({one_line(e)}); "
                "rebuilding it from the dataset",
                stacklevel=2,
            )
    src = make()
    try:  # a half-written cache file is never seen under the real name
        atomic_write(path, lambda f: torch.save(vars(src), f))
    except OSError as e:  # a cache that cannot be written costs only speed next time
        warnings.warn(f"could not write the decoded-data cache {path}: {e}", stacklevel=2)
    return src


def load_cifar(
    name: str, data_dir: Path, cache_dir: Path, *, download_ok: bool = False, strict: bool = False
) -> MemorySource:
    """Find CIFAR in any supported form under data_dir and return it decoded (cached)."""
    spec = SPECS[name]
    data_dir = Path(data_dir).expanduser()
    # 1. an extracted batches folder: data_dir itself or inside it
    for folder in (data_dir, data_dir / spec.folder):
        if (folder / spec.meta_file).is_file():
            return _cached(
                f"{name}-folder-{tree_key(folder)}",
                cache_dir,
                lambda f=folder: _from_folder(f, spec),
            )
    # 2. the official archive (checked against the published MD5), or any tar holding spec.folder
    official = [data_dir] if data_dir.name == spec.archive else [data_dir / spec.archive]
    official.append(cache_dir / "downloads" / spec.archive)
    for arc in official:
        if arc.is_file():
            verify_md5(arc, spec.md5, cache_dir)
            return _cached(
                f"{name}-archive-{file_key(arc)}", cache_dir, lambda a=arc: _from_archive(a, spec)
            )
    candidates = [data_dir] if is_archive(data_dir) else []
    if data_dir.is_dir():
        candidates += sorted(p for p in data_dir.iterdir() if is_archive(p))
    for arc in candidates:
        try:
            with tarfile.open(arc, "r:*") as tar:
                first = next(iter(tar), None)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(f"{arc}: cannot read archive ({e})") from e
        if first is not None and Path(first.name).parts[0] == spec.folder:
            return _cached(
                f"{name}-archive-{file_key(arc)}", cache_dir, lambda a=arc: _from_archive(a, spec)
            )
    # 3. an ImageFolder tree (or an archive of one), e.g. the JPEG mirror
    if data_dir.exists():
        try:
            root = find_tree(data_dir, cache_dir)
        except DatasetError:
            root = None
        if root is not None:
            return _cached(
                f"{name}-tree-{tree_key(root)}", cache_dir, lambda: _from_tree(root, strict)
            )
    if download_ok:
        try:
            arc = download(spec.url, cache_dir / "downloads" / spec.archive, spec.md5)
        except DownloadError as e:
            raise DatasetError(str(e)) from e
        return _cached(
            f"{name}-archive-{file_key(arc)}", cache_dir, lambda: _from_archive(arc, spec)
        )
    raise DatasetError(
        f"{data_dir}: no {name} data found. Put {spec.archive} (from {spec.url}) in {data_dir} "
        f"or {cache_dir / 'downloads'}, or an extracted {spec.folder}/ folder, or an ImageFolder "
        f"tree with train/ (and test/) class folders; or pass download=True."
    )
