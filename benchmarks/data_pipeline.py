"""Images/s of reslab's data pipelines beside a naive per-sample baseline, in one run.

The baseline is what a plain PyTorch user writes: a per-sample Dataset doing the
same augmentation, batched by a DataLoader with 2 workers.

    python benchmarks/data_pipeline.py            # the real data in ../shared/datasets
    python benchmarks/data_pipeline.py --quick    # tiny generated data, a few batches
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reslab.data import build_data
from reslab.data.augment import IMAGENET_MEAN, IMAGENET_STD, PCA_STD, pca_shift, scaled
from reslab.data.synthetic import make_cifar_archive, make_image_folder

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


class NaiveCifar(Dataset):
    """Per-sample pad-crop-flip-normalise on an in-memory uint8 array (torchvision-style)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.mean = x.float().mean(0) / 255
        self.std = (x.float() / 255 - self.mean).std()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = (self.x[i].float() / 255 - self.mean) / self.std
        img = torch.nn.functional.pad(img, (4, 4, 4, 4))
        oy, ox = np.random.randint(0, 9, 2)
        img = img[:, oy : oy + 32, ox : ox + 32]
        if np.random.rand() < 0.5:
            img = img.flip(-1)
        return img, self.y[i]


class NaiveFolder(Dataset):
    """Per-sample full decode, scale augmentation, crop, flip, PCA, normalise."""

    def __init__(self, paths: list[str], labels: list[int], image_size: int) -> None:
        self.paths, self.labels, self.size = paths, labels, image_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = Image.open(self.paths[i]).convert("RGB")
        short = np.random.randint(scaled(256, self.size), scaled(480, self.size) + 1)
        w, h = img.size
        s = short / min(w, h)
        img = img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BILINEAR)
        w, h = img.size
        top, left = np.random.randint(0, h - self.size + 1), np.random.randint(0, w - self.size + 1)
        img = img.crop((left, top, left + self.size, top + self.size))
        if np.random.rand() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
        x = x + pca_shift(torch.randn(1, 3) * PCA_STD)[0].view(3, 1, 1)
        return (x - self.mean) / self.std, self.labels[i]


def rate(batches, n_batches: int) -> float:
    """Images/s over n_batches, after one warm-up batch (worker start-up excluded)."""
    it = iter(batches)
    next(it)
    t, n = time.perf_counter(), 0
    for _, (x, _y) in zip(range(n_batches), it):
        n += len(x)
    return n / (time.perf_counter() - t)


def report(name: str, ours: float, base: float) -> None:
    print(
        f"{name:<22} {ours:>10,.0f} img/s   baseline {base:>8,.0f} img/s   {ours / base:6.1f}x baseline"
    )


def bench_cifar(data_dir: Path, cache: Path, batches: int, bs: int, workers: int) -> None:
    data = build_data(
        "cifar10", data_dir, batch_size=bs, cache_dir=cache, workers=workers, val_size=0
    )
    loader = data.train
    n_epoch = min(batches, len(loader) - 1)
    ours = rate(loader.epoch(0), n_epoch)
    # the baseline gets the same decoded images, so this isolates batching + augmentation
    base_ds = NaiveCifar(loader.x.cpu(), loader.y.cpu())
    dl = DataLoader(base_ds, bs, shuffle=True, num_workers=2, drop_last=True)
    report("cifar memory (train)", ours, rate(dl, min(batches, len(dl) - 1)))


def bench_folder(
    data_dir: Path, cache: Path, batches: int, bs: int, workers: int, size: int
) -> None:
    # JPEGs decoded while iterating, and the decoded-image cache (built first if absent)
    data, cached = (
        build_data(
            "imagefolder",
            data_dir,
            batch_size=bs,
            cache_dir=cache,
            workers=workers,
            image_size=size,
            val_size=0,
            decoded_cache=use,
        )
        for use in (False, True)
    )
    ours, ours_cached = rate(data.train.epoch(0), batches), rate(cached.train.epoch(0), batches)
    ds = data.train.loader.dataset
    base_ds = NaiveFolder([str(p) for p in ds.paths], ds.labels.tolist(), size)
    dl = DataLoader(
        base_ds, bs, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    base = rate(dl, batches)
    report(f"imagefolder {size}px", ours, base)
    report(f"imagefolder {size}px, decoded cache", ours_cached, base)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny generated data, a few batches")
    p.add_argument("--cifar", type=Path, default=SHARED / "cifar10-train-jpeg.tar.gz")
    p.add_argument("--imagefolder", type=Path, default=SHARED / "imagenette-224-train.tar")
    p.add_argument("--batches", type=int, default=40, help="timed batches per pipeline")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $RESLAB_CACHE or ~/.cache/reslab"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads in the main process"
    )
    args = p.parse_args()
    # On a small shared machine 2+ OpenMP threads spin against other processes and can run
    # the batched ops 10x slower; 1 thread gives stable figures. Say which one was used.
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            make_cifar_archive(tmp / "c" / "tiny.tar.gz", 3000, 0)
            make_image_folder(tmp / "f", ["a", "b"], 24, (160, 120))
            bench_cifar(tmp / "c", tmp / "cache", 4, 256, args.workers)
            bench_folder(tmp / "f", tmp / "cache", 2, 8, args.workers, 64)
        return
    if args.cifar.exists():
        bench_cifar(args.cifar, args.cache_dir, args.batches, args.batch_size, args.workers)
    if args.imagefolder.exists():
        bench_folder(args.imagefolder, args.cache_dir, args.batches // 2, 64, args.workers, 224)


if __name__ == "__main__":
    main()
