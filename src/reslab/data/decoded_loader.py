"""Training batches from a decoded ImageFolder split (folder_cache.py).

The same views the per-image Pillow path makes (augment.train_paper, train_rrc,
center_view), drawn for a whole epoch up front and applied a batch at a time with
tensor ops: rows are read from the memory map, cropped, resized and flipped by one
grid_sample, then normalised with PCA lighting. Where it departs from the streaming
path: crops come from each image's centre square (ImageNet photos are mostly 4:3, so
the paper's crops also reach into the sides there; Imagenette's files are square),
and resizing is bilinear from the stored 1.25x square instead of from the JPEG.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .augment import PCA_STD, Normalizer, crop_resize, pca_shift, scaled
from .folder_cache import load_rows
from .loaders import Batch, Loader, _finish, epoch_rng, shard_bounds
from .sources import DatasetError

RRC_TRIES = 10  # as torchvision's RandomResizedCrop, before falling back to the whole square


def scale_boxes(rng: np.random.Generator, n: int, side: int, image_size: int) -> np.ndarray:
    """Sec. 3.4: shorter side to a random S in [256, 480] (scaled), a random image_size
    crop of that: in stored pixels a square of side * image_size / S. (n, 4) boxes."""
    s = rng.integers(scaled(256, image_size), scaled(480, image_size) + 1, n)
    c = np.minimum(side * image_size / s, side)  # (n,)
    return np.stack([rng.random(n) * (side - c), rng.random(n) * (side - c), c, c], 1)


def rrc_boxes(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    """RandomResizedCrop (scale 0.08-1, log-uniform ratio 3/4-4/3) on the stored square:
    the first of RRC_TRIES draws that fits, else the whole square. (n, 4) boxes."""
    area = rng.uniform(0.08, 1.0, (n, RRC_TRIES)) * side * side
    ratio = np.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3), (n, RRC_TRIES)))
    w, h = np.sqrt(area * ratio), np.sqrt(area / ratio)  # (n, tries)
    fits = (w <= side) & (h <= side)
    pick = fits.argmax(1)
    found, rows = fits.any(1), np.arange(n)
    w = np.where(found, w[rows, pick], side)
    h = np.where(found, h[rows, pick], side)
    return np.stack([rng.random(n) * (side - h), rng.random(n) * (side - w), h, w], 1)


def center_boxes(n: int, side: int, image_size: int) -> np.ndarray:
    """augment.center_view: shorter side to 256 (scaled), the centre image_size square."""
    c = min(side * image_size / scaled(256, image_size), side)
    return np.tile([(side - c) / 2, (side - c) / 2, c, c], (n, 1))


@contextmanager
def _one_thread(on: bool) -> Iterator[None]:
    """Run torch on one intra-op thread inside, where `on`. A batch's pixel work (~10 ms for
    32 images at 128 px) is too small to split: with a core taken by another process, two
    OpenMP threads measured 80 ms a batch against 11 on one (2-core machine)."""
    old = torch.get_num_threads()
    if on and old > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if on and old > 1:
            torch.set_num_threads(old)


class DecodedLoader(Loader):
    """Shuffled, augmented training batches (drop_last) from decoded rows.

    Same determinism contract as the other loaders: an epoch's order and every
    sample's augmentation are drawn from (seed, epoch) up front, so a resumed run and
    the ranks of a distributed one see slices of the same draw.
    """

    def __init__(
        self,
        images: np.ndarray,  # (N, side, side, 3) uint8 memory map
        rows: np.ndarray,  # (n,) which rows are this split, int64
        labels: np.ndarray,  # (n,) int64
        normalizer: Normalizer,
        *,
        batch_size: int,
        image_size: int,
        augment: str,  # "paper" | "rrc" | "none"
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        resident: bool | None = None,  # hold the split on `device`; None: on a GPU
    ) -> None:
        self.images, self.rows = images, np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.norm, self.device = normalizer.to(device), device
        self.batch_size, self.image_size, self.augment = batch_size, image_size, augment
        self.seed, self.channels_last = seed, channels_last
        self.lo, self.hi = shard_bounds(batch_size, rank, world_size)
        self.num_samples = len(self.rows)
        # On a GPU the split is copied there once (Imagenette at 128 px: 7,469 rows of 160 x
        # 160 x 3 = 0.57 GB) and each batch is gathered on the device: no host copy a step.
        if resident is None:
            resident = device.type == "cuda"
        self.resident = load_rows(images, self.rows).to(device) if resident else None
        if self.num_samples < batch_size:
            raise DatasetError(
                f"{self.num_samples} training images is fewer than one batch of {batch_size}"
            )

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def _draw(self, epoch: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(order, boxes (n, 4), flips (n,), PCA alphas (n, 3)) for one epoch."""
        rng, n, side = epoch_rng(self.seed, epoch), self.num_samples, self.images.shape[1]
        order = rng.permutation(n)
        if self.augment == "paper":
            boxes = scale_boxes(rng, n, side, self.image_size)
        elif self.augment == "rrc":
            boxes = rrc_boxes(rng, n, side)
        else:
            boxes = center_boxes(n, side, self.image_size)
        flip = rng.random(n) < 0.5
        alpha = rng.normal(0.0, PCA_STD, (n, 3))
        if self.augment == "none":
            flip[:], alpha[:] = False, 0.0
        dev = self.device
        return (
            order,
            torch.as_tensor(boxes, dtype=torch.float32, device=dev),
            torch.as_tensor(flip, device=dev),
            torch.as_tensor(alpha, dtype=torch.float32, device=dev),
        )

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order, boxes, flip, alpha = self._draw(epoch)
        b = self.batch_size
        for t in range(start, len(self)):
            sl = slice(t * b + self.lo, t * b + self.hi)
            idx = order[sl]
            with _one_thread(self.device.type == "cpu"):
                if self.resident is not None:
                    x = self.resident[torch.from_numpy(idx).to(self.device)]
                else:
                    x = load_rows(self.images, self.rows[idx]).to(self.device, non_blocking=True)
                x = x.permute(0, 3, 1, 2).float()  # (B, 3, side, side), channels-last strides
                x = crop_resize(x, boxes[sl], flip[sl], self.image_size)  # (B, 3, size, size)
                shift = pca_shift(alpha[sl]) if self.augment != "none" else None
                x = _finish(self.norm(x, shift), self.channels_last)
            yield x, self.labels[idx].to(self.device)
