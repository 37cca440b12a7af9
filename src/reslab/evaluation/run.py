"""Evaluate a saved run or checkpoint on a dataset split, in any of the paper's views."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..data import Data, build_data
from ..devices import pick_device
from ..inference import load_model
from .scores import evaluate


def run_data(
    cfg: dict[str, Any],
    image_size: int | None,
    dataset: str,
    data_dir: str,
    batch_size: int = 200,
    device: torch.device | str = "cpu",
    split: str = "val",
    normalization: dict | None = None,
) -> Data:
    """The data a run was trained on, split exactly as in training (same val_size, seed, limit)."""
    return build_data(
        dataset, os.path.expanduser(data_dir), batch_size=batch_size, eval_batch_size=batch_size,
        val_size=cfg.get("val_size", 0 if split == "test" else 5000),
        split_seed=cfg.get("split_seed", 0), limit=cfg.get("limit"), image_size=image_size,
        normalize=cfg.get("normalize", "channel"), workers=cfg.get("workers", 2), device=device,
        channels_last=True, crop_pad=cfg.get("crop_pad"),  # 10-crop translates by this much
        normalization=normalization,
    )  # fmt: skip


def evaluate_run(
    model_path: str | Path,
    *,
    data_dir: str | None = None,
    dataset: str | None = None,
    split: str = "test",
    ten_crop: bool = False,
    scales: list[int] | None = None,
    flip: bool = False,
    shift: int = 0,
    batch_size: int = 200,
    device: str = "auto",
    arch: str | None = None,
    normalization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 error (%) of a run, reslab checkpoint or torchvision/timm weights file.

    The data defaults to the run's own; a plain weights file needs dataset and data_dir,
    and `normalization` (reslab.inference.normalization_from) where the file's
    preprocessing is not ImageNet's.
    """
    dev = pick_device(device)
    loaded = load_model(model_path, arch, normalization)
    model = loaded.model.to(dev, memory_format=torch.channels_last)
    cfg = loaded.config
    dataset = dataset or cfg.get("dataset")
    data_dir = data_dir or cfg.get("data_dir")
    if not dataset or not data_dir:
        raise ValueError(f"{model_path}: say --dataset and --data-dir (the file does not)")
    # The statistics the model was trained with, not ones refitted to this data.
    data = run_data(cfg, loaded.image_size, dataset, data_dir, batch_size, dev, split,
                    loaded.normalization)  # fmt: skip
    if loaded.recorded_classes and data.classes != loaded.classes:
        raise ValueError(
            f"{model_path}: the model was trained on classes {loaded.classes[:5]}..., "
            f"but {data_dir} has {data.classes[:5]}..."
        )
    if len(data.classes) > len(loaded.classes):
        raise ValueError(
            f"{model_path}: a {len(loaded.classes)}-way classifier cannot be scored on "
            f"{len(data.classes)} classes in {data_dir}"
        )
    if scales:
        loaders = [data.eval_loader(split, "full", s).epoch(0) for s in scales]
        view = "scales-" + "-".join(map(str, scales))
        res = evaluate(model, *loaders, flip=flip, shift=shift)
    else:
        view = "ten-crop" if ten_crop else "center"
        res = evaluate(model, data.eval_loader(split, view).epoch(0), flip=flip, shift=shift)
    view += ("-flip" if flip else "") + (f"-shift{shift}" if shift else "")
    return {**res, "split": split, "view": view, "checkpoint": str(loaded.file)}
