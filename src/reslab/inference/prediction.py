"""Classify image files with a loaded network, the way its evaluation saw images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.augment import Normalizer, center_view, scaled
from ..data.sources import IMAGE_EXTENSIONS
from ..errors import NonFiniteScores
from .load import load_model
from .optimize import optimize_for_inference

IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # what an ImageFolder tree is read for, too


def normalizer(norm: dict[str, Any]) -> Normalizer:
    """The training pipeline's Normalizer rebuilt from its JSON form."""
    return Normalizer.from_dict(norm)


def center_crop(image: Image.Image, image_size: int, short: int | None = None) -> np.ndarray:
    """(S, S, 3) uint8: the evaluation view of a decoded image (same arithmetic as
    reslab.data.augment.center_view, which works from a file): shorter side to
    `short` (default round(256 * S / 224)) with bilinear resampling, then the centre S x S."""
    img = image.convert("RGB")
    short = short or scaled(256, image_size)
    w, h = img.size
    if min(w, h) != short:
        s = short / min(w, h)
        img = img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BILINEAR)
    w, h = img.size
    top, left = (h - image_size) // 2, (w - image_size) // 2
    return np.asarray(img.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)


def expand_images(items: Sequence[str | Path | Image.Image]) -> list[str | Image.Image]:
    """Folders become their image files (recursively, sorted); files and images pass through."""
    out: list[str | Image.Image] = []
    for item in items:
        if isinstance(item, Image.Image):
            out.append(item)
        elif Path(item).is_dir():
            out += sorted(  # regular files only: reading a FIFO would wait forever
                str(p)
                for p in Path(item).rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        else:
            out.append(str(item))
    return out


def predict(
    model_or_path: nn.Module | str | Path,
    images: Sequence[str | Path | Image.Image],
    top: int = 5,
    batch_size: int = 32,
    arch: str | None = None,
    normalization: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Classify images: per image {"path", "top": [{"label", "index", "prob"}, ...]}, or
    {"path", "error"} for a file that cannot be decoded (the others are still classified).
    `normalization` (see normalization_from) says how a file that records none was fed."""
    loaded = load_model(model_or_path, arch, normalization)
    net = optimize_for_inference(loaded.model, mode="fold")
    norm = normalizer(loaded.normalization)
    top = max(1, min(top, len(loaded.classes)))
    items = expand_images(images)
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        batch, slots = [], []
        for i, item in enumerate(items[start : start + batch_size], start):
            name = str(item) if not isinstance(item, Image.Image) else f"<image {i}>"
            results.append({"path": name})
            try:
                if isinstance(item, str) and Path(item).exists() and not Path(item).is_file():
                    raise ValueError("not a regular file (a folder, FIFO or device)")
                view = (
                    center_view(item, loaded.image_size, loaded.resize_shorter_side)
                    if isinstance(item, str)
                    else center_crop(item, loaded.image_size, loaded.resize_shorter_side)
                )
            except Exception as e:  # noqa: BLE001 - an unreadable file is reported, not fatal
                results[-1]["error"] = f"{type(e).__name__}: {e}"
                continue
            batch.append(torch.from_numpy(np.array(view)).permute(2, 0, 1))  # (3, S, S)
            slots.append(len(results) - 1)
        if not batch:
            continue
        x = norm(torch.stack(batch)).contiguous(memory_format=torch.channels_last)  # (B, 3, S, S)
        with torch.inference_mode():
            probs = net(x).float().softmax(1)  # (B, K)
        if not probs.isfinite().all():  # a diverged net: its argmax is no prediction
            source = model_or_path if isinstance(model_or_path, (str, Path)) else "the model"
            raise NonFiniteScores(
                f"{source}: the network's outputs are NaN or infinite (a "
                "diverged network?); nothing is predicted"
            )
        p, idx = probs.topk(top, dim=1)
        for slot, pr, ix in zip(slots, p.tolist(), idx.tolist()):
            results[slot]["top"] = [
                {"label": loaded.classes[j], "index": j, "prob": q} for j, q in zip(ix, pr)
            ]
    return results
