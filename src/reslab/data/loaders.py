"""Loaders: an in-memory device loader for small data and a DataLoader for JPEG folders.

Both follow one determinism contract: everything an epoch yields (order and
augmentation) is a pure function of (seed, epoch), so a run resumed at batch
`start` sees exactly what the uninterrupted run saw, and with world_size > 1 the
ranks' chunks of each global batch together equal the single-process batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import PCA_STD, TRAIN_VIEWS, Normalizer, crop_flip, pca_shift, ten_crop_batch
from .sources import DatasetError
from .workers import init_worker

Batch = tuple[Tensor, Tensor]
FALLBACK_TRIES = 16  # how far a worker walks from an unreadable file to find a readable one


def epoch_rng(seed: int, epoch: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, *more])


def shard_bounds(batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous chunk [lo, hi) of every global batch (which the run's plan,
    or build_data, has checked divides evenly)."""
    per = batch_size // world_size
    return rank * per, (rank + 1) * per


def _finish(x: Tensor, channels_last: bool) -> Tensor:
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


class Loader:
    """What the training loop iterates: len() batches per epoch, epoch(e, start) yields (x, y)."""

    num_samples: int

    def __len__(self) -> int:
        raise NotImplementedError

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        raise NotImplementedError


class MemoryLoader(Loader):
    """A uint8 dataset resident on the training device, augmented a whole batch at a time.

    train=True: shuffled, random crop (zero padding `pad`) and flip, drop_last;
    with `cutout` > 0 also a cutout x cutout square set to the mean colour (DeVries &
    Taylor 2017; beyond the paper); with `alternate_flip` each image is mirrored in
    every other epoch, starting from a random choice per image, rather than by a coin
    in every epoch (airbench, Jordan 2024; beyond the paper).
    Each epoch draws its permutation and the crop/flip parameters for every
    sample up front, so a global batch's parameters are a slice of them.
    """

    def __init__(
        self,
        x: Tensor,  # (N, 3, H, W) uint8 on the device
        y: Tensor,  # (N,) int64 on the device
        normalizer: Normalizer,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        pad: int = 4,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        view: str = "center",
        scale: int | None = None,
        augment: bool = True,
        cutout: int = 0,
        alternate_flip: bool = False,
    ) -> None:
        self.x, self.y, self.norm = x, y, normalizer
        self.augment, self.cutout, self.alternate_flip = augment, cutout, alternate_flip
        self.batch_size, self.train, self.seed, self.pad = batch_size, train, seed, pad
        self.lo, self.hi = shard_bounds(batch_size, rank, world_size) if train else (0, batch_size)
        self.channels_last, self.view, self.scale = channels_last, view, scale
        self.num_samples = len(x)
        if train and len(x) < batch_size:
            raise DatasetError(f"{len(x)} training images is fewer than one batch of {batch_size}")

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.train else math.ceil(n / b)

    def _view(self, x: Tensor) -> Tensor:
        if self.view == "ten-crop":
            return ten_crop_batch(x, self.pad)
        if self.view == "full" and self.scale and self.scale != x.shape[-1]:
            return F.interpolate(x, size=(self.scale, self.scale), mode="bilinear", antialias=True)
        return x

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        dev, b = self.x.device, self.batch_size
        if not self.train:
            for t in range(start, len(self)):
                sl = slice(t * b, (t + 1) * b)
                yield _finish(self._view(self.norm(self.x[sl])), self.channels_last), self.y[sl]
            return
        rng = epoch_rng(self.seed, epoch)
        n = self.num_samples
        perm = torch.from_numpy(rng.permutation(n)).to(dev)
        oy = torch.from_numpy(rng.integers(0, 2 * self.pad + 1, n)).to(dev)
        ox = torch.from_numpy(rng.integers(0, 2 * self.pad + 1, n)).to(dev)
        flip = torch.from_numpy(rng.random(n) < 0.5).to(dev)  # drawn always: keeps the stream
        if self.alternate_flip:  # image i is mirrored in epochs of one parity: first[i] ^ odd
            first = torch.from_numpy(epoch_rng(self.seed, 0, 1).random(n) < 0.5).to(dev)
            flip = first[perm] ^ bool(epoch % 2)
        h, w = self.x.shape[-2:]
        if self.cutout:  # drawn after the crops, so runs without cutout keep their stream
            cy = torch.from_numpy(rng.integers(0, h, n)).to(dev)
            cx = torch.from_numpy(rng.integers(0, w, n)).to(dev)
        for t in range(start, len(self)):
            sl = slice(t * b + self.lo, t * b + self.hi)
            idx = perm[sl]
            xb = self.norm(self.x[idx])
            if self.augment:
                xb = crop_flip(xb, oy[sl], ox[sl], flip[sl], self.pad)
            if self.augment and self.cutout:
                xb = cutout(xb, cy[sl], cx[sl], self.cutout)
            yield _finish(xb, self.channels_last), self.y[idx]


def cutout(x: Tensor, cy: Tensor, cx: Tensor, size: int) -> Tensor:
    """Zero (the mean colour) a size x size square centred at (cy, cx) in each image;
    squares may hang over the edge. x (B, C, H, W) normalised; cy, cx (B,)."""
    h, w = x.shape[-2:]
    top, left = cy - size // 2, cx - size // 2  # (B,)
    rows = torch.arange(h, device=x.device)[None, :] - top[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] - left[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None]
    return x.masked_fill(inside[:, None], 0.0)  # (B, C, H, W)


# ---------------------------------------------------------------------------- JPEG folders


class EpochBatches(Sampler):
    """Batch sampler yielding (index, epoch, position) keys, so a worker can seed a
    per-sample RNG from (seed, epoch, position) whichever worker gets the sample."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.lo, self.hi = (
            shard_bounds(batch_size, rank, world_size) if shuffle else (0, batch_size)
        )
        self.epoch, self.start = 0, 0

    def total(self) -> int:
        return self.n // self.batch_size if self.shuffle else math.ceil(self.n / self.batch_size)

    def __len__(self) -> int:
        return max(0, self.total() - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        b = self.batch_size
        order = (
            epoch_rng(self.seed, self.epoch).permutation(self.n) if self.shuffle else range(self.n)
        )
        for t in range(self.start, self.total()):
            lo, hi = t * b + self.lo, min(t * b + self.hi, self.n)
            yield [(int(order[p]), self.epoch, p) for p in range(lo, hi)]


class FolderDataset(Dataset):
    """Decodes one image per key in a worker. An unreadable file is replaced by the next
    readable one (deterministically) and reported back, unless strict."""

    def __init__(
        self,
        paths: list[str],
        labels: list[int],
        view: Callable[[str, np.random.Generator], np.ndarray],
        *,
        seed: int,
        pca: bool,
        strict: bool,
    ) -> None:
        self.paths = np.array(paths)  # one numpy array, not a list: no copy-on-read in workers
        self.labels = np.array(labels, dtype=np.int64)
        self.view, self.seed, self.pca, self.strict = view, seed, pca, strict

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int]):
        index, epoch, pos = key
        rng = epoch_rng(self.seed, epoch, pos)
        bad: list[str] = []
        for k in range(FALLBACK_TRIES):
            j = (index + k) % len(self.paths)
            try:
                arr = self.view(str(self.paths[j]), rng)
                break
            except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
                if self.strict:
                    raise DatasetError(f"{self.paths[j]}: unreadable image ({e})") from e
                bad.append(str(self.paths[j]))
        else:
            raise DatasetError(f"{FALLBACK_TRIES} unreadable images in a row, e.g. {bad[:3]}")
        alpha = rng.normal(0.0, PCA_STD, 3) if self.pca else np.zeros(3)
        return arr, self.labels[j], alpha, bad


class Collate:
    """Stack samples into a batch. On a CPU-only run it also normalises (and applies PCA
    lighting) in the worker, so the main process, which trains, does no pixel work;
    with an accelerator the uint8 batch (4x fewer bytes) goes to the device instead."""

    def __init__(self, norm: Normalizer | None, pca: bool) -> None:
        self.norm, self.pca = norm, pca

    def __call__(self, items: list) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        x = torch.from_numpy(np.stack([it[0] for it in items]))  # (B, [10,] H, W, 3) uint8
        y = torch.from_numpy(np.array([it[1] for it in items], dtype=np.int64))
        alpha = torch.from_numpy(np.stack([it[2] for it in items])).float()
        if self.norm is not None:
            x = _pixels(x, alpha, self.norm, self.pca)
        return x, y, alpha, [p for it in items for p in it[3]]


def _pixels(x: Tensor, alpha: Tensor, norm: Normalizer, pca: bool) -> Tensor:
    # (B, H, W, 3) -> (B, 3, H, W): a view whose strides already are channels_last
    x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.permute(0, 1, 4, 2, 3)
    return norm(x, pca_shift(alpha) if pca else None)


class FolderLoader(Loader):
    """Pillow decoding in DataLoader workers; normalisation and PCA lighting on the device."""

    def __init__(
        self,
        dataset: FolderDataset,
        normalizer: Normalizer,
        *,
        batch_size: int,
        train: bool,
        seed: int,
        workers: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        self.num_samples = len(dataset)
        self.device, self.channels_last, self.pca = device, channels_last, dataset.pca
        self.norm = normalizer.to(device)
        self.batches = EpochBatches(
            len(dataset), batch_size, shuffle=train, seed=seed, rank=rank, world_size=world_size
        )
        if train and self.batches.total() == 0:
            raise DatasetError(
                f"{len(dataset)} training images is fewer than one batch of {batch_size}"
            )
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.batches,
            num_workers=workers,
            collate_fn=Collate(self.norm if device.type == "cpu" else None, self.pca),
            pin_memory=device.type == "cuda",
            # Training workers persist: they keep their import and open-file state between
            # epochs. An evaluation's workers end with it: they are forked from a trainer at its
            # training peak and would otherwise hold a copy-on-write share of it all along.
            persistent_workers=workers > 0 and train,
            prefetch_factor=(4 if train else 2) if workers > 0 else None,  # batches a worker
            worker_init_fn=init_worker,  # ends with the trainer, drops its locks and free heap
            generator=torch.Generator(),  # workers' seeds: never drawn from the training RNG
        )
        self.reported: set[str] = set()

    def __len__(self) -> int:
        return self.batches.total()

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.batches.epoch, self.batches.start = epoch, start
        bad: set[str] = set()
        for x, y, alpha, failed in self.loader:
            if failed and not self.reported and not bad:  # the first bad file: say so now
                warnings.warn(
                    f"skipping unreadable image files (each replaced by a neighbour), e.g. "
                    f"{sorted(set(failed))[:3]}; the count follows at the end of the epoch "
                    "(strict=True / --strict makes them an error)",
                    stacklevel=2,
                )
            bad.update(failed)
            if x.dtype == torch.uint8:  # not yet normalised by the workers
                x = _pixels(
                    x.to(self.device, non_blocking=True), alpha.to(self.device), self.norm, self.pca
                )
            yield _finish(x, self.channels_last), y.to(self.device)
        new = sorted(bad - self.reported)
        if new:
            self.reported.update(new)
            warnings.warn(
                f"skipped {len(new)} unreadable image files (replaced by neighbours), e.g. {new[:3]}",
                stacklevel=2,
            )


__all__ = ["Loader", "MemoryLoader", "FolderLoader", "FolderDataset", "EpochBatches", "TRAIN_VIEWS"]
