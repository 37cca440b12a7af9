"""build_data(): one call from a dataset name and a folder to train/val/test loaders."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import check_choices, check_split
from ..datasets import DATASETS, dataset_kind, is_cifar
from ..storage.downloads import default_cache_dir
from .augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRAIN_VIEWS,
    Normalizer,
    center_view,
    full_view,
    scaled,
    ten_crop_view,
)
from .cifar import load_cifar
from .decoded_loader import DecodedLoader
from .folder_cache import decoded_split, stored_side
from .loaders import FolderDataset, FolderLoader, Loader, MemoryLoader
from .settings import DataSettings
from .sources import (
    DatasetError,
    FolderIndex,
    check_files,
    find_tree,
    index_tree,
    is_archive,
)

KINDS = {name: kind.loader for name, kind in DATASETS.items()}  # "memory" | "imagefolder"
VIEWS = ("center", "ten-crop", "full")


@dataclass
class Data:
    train: Loader | None  # shuffled, augmented, drop_last; None when built for evaluation
    val: Loader | None  # held out from the training split, centre view
    test: Loader | None  # the source's test (or val) split, when it has one
    classes: list[str]
    image_size: int
    normalization: dict  # JSON: how to preprocess a new image at inference
    kind: str  # "memory" or "imagefolder"
    _make_eval: Callable[[str, str, int | None], Loader | None] = field(repr=False)
    _evals: dict = field(default_factory=dict, repr=False)
    # imagefolder: the decoded-image file training reads (folder_cache.py); None: JPEGs
    decoded_cache: str | None = None

    def eval_loader(self, split: str, view: str = "center", scale: int | None = None) -> Loader:
        """An unaugmented, unsharded loader. view "ten-crop" yields x (B, 10, C, H, W);
        "full" resizes the shorter side to `scale`, given in the paper's units for 224
        inputs (224, 256, 384, 480, 640) and multiplied by image_size / 224."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, not {split!r}")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
        key = (split, view, scale)
        if key not in self._evals:  # cached so persistent workers are reused
            loader = self._make_eval(split, view, scale)
            if loader is None:
                raise DatasetError(f"this dataset has no {split!r} split")
            self._evals[key] = loader
        return self._evals[key]


def split_indices(n: int, val_size: int, split_seed: int, limit: int | None):
    """Seeded shuffle, keep the first `limit`, hold out the first val_size of those."""
    perm = np.random.default_rng(split_seed).permutation(n)
    if limit is not None:
        perm = perm[:limit]
    if val_size >= len(perm) // 2 and val_size > 0:  # never more than exist: hold out 10%
        capped = len(perm) // 10
        warnings.warn(
            f"val_size={val_size} is too many for {len(perm)} training images; "
            f"holding out {capped} (10%)",
            stacklevel=3,
        )
        val_size = capped
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


@dataclass(frozen=True)
class Placement:
    """Where the batches go, not what they are: this process's device and shard."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    channels_last: bool = False
    cache: Path | None = None  # decoded data and extracted archives; None: the default
    fixed_norm: Normalizer | None = None  # a trained model's statistics, not refitted
    training: bool = True  # False: evaluation only: no training loader, train/ optional


def build_data(
    dataset: str,
    data_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
    cache_dir: str | Path | None = None,
    normalization: dict | None = None,  # fixed statistics (a trained model's), not refitted
    training: bool = True,  # False: evaluation only: no training loader, train/ optional
    **settings: Any,  # DataSettings' fields: batch_size, val_size, image_size, ...
) -> Data:
    """Train/val/test loaders from a dataset name, a folder and DataSettings' fields as
    keywords, checked as a run's config is (a training run's are checked by its plan)."""
    s = DataSettings(dataset=dataset, data_dir=str(data_dir), **settings)
    try:
        check_choices(s)
        check_split(s.batch_size, world_size, 1)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    if not 0 <= rank < world_size:
        raise DatasetError(f"rank {rank} outside world_size {world_size}")
    place = Placement(
        torch.device(device),
        rank,
        world_size,
        channels_last,
        Path(cache_dir).expanduser() if cache_dir else None,
        Normalizer.from_dict(normalization) if normalization else None,
        training,
    )
    return load_data(s, place)


def load_data(s: DataSettings, place: Placement) -> Data:
    """The loaders of checked settings `s`, placed as `place` says."""
    where = Path(s.data_dir).expanduser()
    if where.exists() and not where.is_dir() and not is_archive(where):
        raise DatasetError(f"--data-dir {where} is a file, not a dataset folder or archive")
    cache = place.cache or default_cache_dir()
    if is_cifar(s.dataset):
        src = load_cifar(s.dataset.lower(), where, cache, download_ok=s.download, strict=s.strict)
        return _memory_data(src, s, place)
    root = find_tree(where, cache)
    return _folder_data(index_tree(root, need_train=place.training), s, place, cache)


def _resize(x: torch.Tensor | None, size: int) -> torch.Tensor | None:
    if x is None or x.shape[-1] == size or not len(x):
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8)


def _memory_data(src, s: DataSettings, place: Placement) -> Data:
    image_size = s.image_size or dataset_kind(s.dataset).image_size
    device = place.device
    if place.training and not len(src.train_x):
        raise DatasetError(f"{src.origin}: no training images (missing split folder 'train/')")
    tr, va = (
        split_indices(len(src.train_x), s.val_size, s.split_seed, s.limit)
        if len(src.train_x)
        else (np.zeros(0, np.int64),) * 2
    )
    x = _resize(src.train_x, image_size).to(device)
    y = src.train_y.to(device)
    test_x = _resize(src.test_x, image_size)
    tri, vai = torch.from_numpy(tr).to(device), torch.from_numpy(va).to(device)
    parts = {"train": (x[tri], y[tri]), "val": (x[vai], y[vai]) if len(va) else None}
    del x  # the splits are copies: the whole decoded set need not outlive this line
    if test_x is not None:
        parts["test"] = (test_x.to(device), src.test_y.to(device))
    # Fitted on the uint8 split itself, a chunk at a time (no float copy of the dataset).
    norm = place.fixed_norm or Normalizer.fit(s.normalize, parts["train"][0])
    norm = norm.to(device)
    if norm.kind == "pixel-mean" and tuple(norm.mean.shape[-2:]) != (image_size, image_size):
        raise DatasetError(
            f"the model's mean image is {tuple(norm.mean.shape)}, the data "
            f"{image_size}x{image_size} px"
        )
    pad = image_size // 8 if s.crop_pad is None else s.crop_pad  # 4 px at 32, as in sec. 4.2
    train = None
    if place.training:
        train = MemoryLoader(
            *parts["train"],
            norm,
            batch_size=s.batch_size,
            train=True,
            seed=s.seed,
            pad=pad,
            rank=place.rank,
            world_size=place.world_size,
            channels_last=place.channels_last,
            augment=s.augment != "none",
            cutout=s.cutout,
            alternate_flip=s.alternate_flip,
        )

    def make_eval(split: str, view: str, scale: int | None) -> Loader | None:
        if parts.get(split) is None:
            return None
        px = scaled(scale, image_size) if scale else None
        return MemoryLoader(
            *parts[split],
            norm,
            batch_size=s.eval_batch_size,
            train=False,
            pad=pad,
            channels_last=place.channels_last,
            view=view,
            scale=px,
        )

    return _data(train, make_eval, src.classes, image_size, norm, "memory")


class _EvalView:
    """A picklable (path, rng) -> array for an unaugmented view."""

    def __init__(self, fn: Callable, size: int) -> None:
        self.fn, self.size = fn, size

    def __call__(self, path: str, rng: np.random.Generator) -> np.ndarray:
        return self.fn(path, self.size)


def _folder_data(
    splits: dict[str, FolderIndex], s: DataSettings, place: Placement, cache: Path
) -> Data:
    image_size = s.image_size or dataset_kind(s.dataset).image_size
    if s.strict:
        bad = [p for ix in splits.values() for p in check_files(ix.paths)]
        if bad:
            raise DatasetError(f"{len(bad)} unreadable image files, e.g. {bad[:3]}")
    given = splits.get("val")  # ImageNet's and Imagenette's own validation folder
    full = splits.get("train")  # None: evaluation of a tree with only test/ (or val/)
    sub: dict[str, tuple[list[str], list[int]] | None] = {}
    if full is not None:
        tr, va = split_indices(len(full.paths), 0 if given else s.val_size, s.split_seed, s.limit)
        sub["train"] = ([full.paths[i] for i in tr], [full.labels[i] for i in tr])
        sub["val"] = (
            ([full.paths[i] for i in va], [full.labels[i] for i in va]) if len(va) else None
        )
    if given is not None:
        sub["val"] = (given.paths, given.labels)
    test = splits.get("test") or splits.get("val")
    if test is not None:
        sub["test"] = (test.paths, test.labels)
    # Per-channel ImageNet statistics whatever `normalize` says: see augment.Normalizer.
    norm = place.fixed_norm or Normalizer(
        "channel", torch.tensor(IMAGENET_MEAN).reshape(3, 1, 1), torch.tensor(IMAGENET_STD)
    )
    if norm.kind != "channel":
        raise DatasetError(
            "ImageFolder data takes per-channel statistics, and this network was trained "
            "with a per-pixel mean image (the paper's CIFAR preprocessing): for CIFAR "
            "images give --dataset cifar10 (an ImageFolder tree of CIFAR-10 is read too)"
        )
    if s.augment == "none":
        view, pca = _EvalView(center_view, image_size), False
    else:
        view, pca = partial(TRAIN_VIEWS[s.augment], image_size=image_size), True
    loader_kw = dict(
        seed=s.seed, workers=s.workers, device=place.device, channels_last=place.channels_last
    )
    # A smoke run (`limit`) streams: it should not decode a whole split first.
    use_cache = (
        place.training and s.decoded_cache is not False and (s.limit is None or s.decoded_cache)
    )
    train = _decoded_train(full, tr, image_size, norm, s, place, cache) if use_cache else None
    if train is None and place.training:
        train = FolderLoader(
            FolderDataset(*sub["train"], view, seed=s.seed, pca=pca, strict=s.strict),
            norm,
            batch_size=s.batch_size,
            train=True,
            rank=place.rank,
            world_size=place.world_size,
            **loader_kw,
        )

    def make_eval(split: str, view: str, scale: int | None) -> Loader | None:
        if sub.get(split) is None:
            return None
        if view == "full":
            fn, bs = _EvalView(full_view, scaled(scale or 224, image_size)), 1  # sizes differ
        else:
            fn, bs = (
                _EvalView(center_view if view == "center" else ten_crop_view, image_size),
                s.eval_batch_size,
            )
        ds = FolderDataset(*sub[split], fn, seed=0, pca=False, strict=s.strict)
        return FolderLoader(ds, norm, batch_size=bs, train=False, **loader_kw)

    classes = (full or next(iter(splits.values()))).classes
    data = _data(train, make_eval, classes, image_size, norm, "imagefolder")
    if isinstance(train, DecodedLoader):
        data.decoded_cache = str(train.images.filename)
    return data


def _decoded_train(
    full: FolderIndex,
    tr: np.ndarray,
    image_size: int,
    norm: Normalizer,
    s: DataSettings,
    place: Placement,
    cache: Path,
) -> DecodedLoader | None:
    """The training split from its decoded-image cache (folder_cache.py), or None when it
    is too large for one (or the disk too full): then JPEGs are decoded while training."""
    split = decoded_split(
        full.root,
        full.paths,
        stored_side(image_size),
        cache,
        workers=s.workers,
        strict=s.strict,
        limit_bytes=2**62 if s.decoded_cache else None,
    )
    if split is None:
        return None
    if not split.ok[tr].all():
        bad = [full.paths[i] for i in tr[~split.ok[tr]]]
        warnings.warn(f"skipped {len(bad)} unreadable image files, e.g. {bad[:3]}", stacklevel=4)
    rows = tr[split.ok[tr]]
    return DecodedLoader(
        split.images,
        rows,
        np.asarray(full.labels)[rows],
        norm,
        batch_size=s.batch_size,
        image_size=image_size,
        augment=s.augment,
        seed=s.seed,
        device=place.device,
        rank=place.rank,
        world_size=place.world_size,
        channels_last=place.channels_last,
    )


def _data(train, make_eval, classes, image_size, norm, kind) -> Data:
    data = Data(train, None, None, list(classes), image_size, norm.to_dict(), kind, make_eval)
    for split in ("val", "test"):
        loader = make_eval(split, "center", None)
        if loader is not None:
            data._evals[(split, "center", None)] = loader
            setattr(data, split, loader)
    return data
