"""Evaluate a saved run or checkpoint on a dataset split, in any of the paper's views."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .data import build_data
from .evaluate import evaluate
from .train.checkpoint import model_from_checkpoint, resolve
from .train.setup import pick_device


def evaluate_run(
    model_path: str | Path,
    *,
    data_dir: str | None = None,
    dataset: str | None = None,
    split: str = "test",
    ten_crop: bool = False,
    scales: list[int] | None = None,
    flip: bool = False,
    batch_size: int = 200,
    device: str = "auto",
) -> dict[str, Any]:
    """Top-1/top-5 error (%) of a trained network; the data defaults to the run's own."""
    dev = pick_device(device)
    model, ckpt = model_from_checkpoint(model_path, dev)
    model = model.to(memory_format=torch.channels_last)
    cfg = ckpt.get("config", {})
    dataset = dataset or cfg.get("dataset")
    data_dir = data_dir or cfg.get("data_dir")
    if not dataset or not data_dir:
        raise ValueError(f"{model_path}: say --dataset and --data-dir (the checkpoint does not)")
    data = build_data(
        dataset, os.path.expanduser(data_dir), batch_size=batch_size, eval_batch_size=batch_size,
        val_size=cfg.get("val_size", 5000), split_seed=cfg.get("split_seed", 0),
        image_size=ckpt.get("image_size"), normalize=cfg.get("normalize", "pixel-mean"),
        workers=cfg.get("workers", 2), device=dev, channels_last=True,
    )  # fmt: skip
    if data.classes != ckpt.get("classes", data.classes):
        raise ValueError(
            f"{model_path}: the model was trained on classes {ckpt['classes'][:5]}..., "
            f"but {data_dir} has {data.classes[:5]}..."
        )
    if scales:
        loaders = [data.eval_loader(split, "full", s).epoch(0) for s in scales]
        view = "scales-" + "-".join(map(str, scales))
        res = evaluate(model, *loaders, flip=flip)
    else:
        view = "ten-crop" if ten_crop else "center"
        res = evaluate(model, data.eval_loader(split, view).epoch(0), flip=flip)
    view += "-flip" if flip else ""
    return {**res, "split": split, "view": view, "checkpoint": str(resolve(model_path))}
