"""Tiny generated datasets in the real on-disk formats, for tests and smoke runs.

Images are random noise plus a class-dependent colour, so a model can learn them.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def _cifar_images(rng: np.random.Generator, labels: np.ndarray, num_classes: int) -> np.ndarray:
    base = rng.integers(0, 256, (num_classes, 3), dtype=np.uint8)  # a colour per class
    noise = rng.integers(0, 64, (len(labels), 3, 32, 32), dtype=np.uint8)
    img = base[labels][:, :, None, None].astype(np.int16) * 3 // 4 + noise
    return img.clip(0, 255).astype(np.uint8).reshape(len(labels), 3072)


def make_cifar_archive(
    path: str | Path, n_train: int, n_test: int, num_classes: int = 10, seed: int = 0
) -> Path:
    """Write a CIFAR-10 (num_classes=10) or CIFAR-100 (otherwise) python-format archive.

    Name it anything but the official cifar-10-python.tar.gz / cifar-100-python.tar.gz:
    a file with the official name is checked against the published MD5 and fails.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    c10 = num_classes == 10
    folder = "cifar-10-batches-py" if c10 else "cifar-100-python"
    label_key = b"labels" if c10 else b"fine_labels"
    files: dict[str, dict] = {}
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if c10 else ["train"]
    chunks = np.array_split(np.arange(n_train), len(train_names))
    for name, chunk in zip(train_names, chunks):
        y = rng.integers(0, num_classes, len(chunk))
        files[name] = {b"data": _cifar_images(rng, y, num_classes), label_key: y.tolist()}
    if n_test:
        y = rng.integers(0, num_classes, n_test)
        files["test_batch" if c10 else "test"] = {
            b"data": _cifar_images(rng, y, num_classes),
            label_key: y.tolist(),
        }
    names = [f"class{i}".encode() for i in range(num_classes)]
    meta = {b"label_names": names} if c10 else {b"fine_label_names": names}
    files["batches.meta" if c10 else "meta"] = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in files.items():
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_image_folder(
    root: str | Path,
    classes: list[str],
    per_class: int,
    size: int | tuple[int, int],
    split: str = "train",
    seed: int = 0,
    ext: str = ".jpg",
) -> Path:
    """Write root/<split>/<class>/<i><ext> RGB images of `size` (int: square; (w, h))."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = (size, size) if isinstance(size, int) else size
    for c, name in enumerate(classes):
        d = root / split / name
        d.mkdir(parents=True, exist_ok=True)
        colour = np.array([(c * 80) % 256, (c * 150) % 256, (c * 40 + 100) % 256], np.int16)
        for i in range(per_class):
            noise = rng.integers(-40, 40, (h, w, 3))
            arr = (colour + noise).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i:04d}{ext}")
    return root
