"""Evaluate a saved run or checkpoint on a dataset split, in any of the paper's views."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Data, build_data
from ..data.augment import scaled
from ..data.build import KINDS
from ..data.sources import DatasetError
from ..devices import GIB, available, pick_device
from ..inference import load_model
from ..models import build
from .scores import evaluate

# A batch of views holds its float input about 3 times over (the view, a flipped or
# shifted copy, the padded one) and each layer's output about 3 times (input, output,
# the residual kept for the addition): bytes per input pixel of a view is
# 4 x (3 x 3 + 3 x widest leaf output per input pixel).
_COPIES = 3


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
    """The data a run was trained on, split exactly as in training (same val_size, seed, limit).
    Evaluation only: no training loader is built, and `test` needs no training split."""
    return build_data(
        dataset,
        os.path.expanduser(data_dir),
        batch_size=batch_size,
        eval_batch_size=batch_size,
        val_size=0 if split == "test" else cfg.get("val_size", 5000),
        training=False,
        split_seed=cfg.get("split_seed", 0),
        limit=cfg.get("limit"),
        image_size=image_size,
        normalize=cfg.get("normalize", "channel"),
        workers=cfg.get("workers", 2),
        device=device,
        channels_last=True,
        crop_pad=cfg.get("crop_pad"),  # 10-crop translates by this much
        normalization=normalization,
    )


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
    predictions: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 error (%) of a run, reslab checkpoint or torchvision/timm weights file.

    The data defaults to the run's own; a plain weights file needs dataset and data_dir,
    and `normalization` (reslab.inference.normalization_from) where the file's
    preprocessing is not ImageNet's.
    """
    if scales is not None and not scales:
        raise ValueError("scales is empty: give sizes such as 224,256,384,480,640")
    dev = pick_device(device)
    loaded = load_model(model_path, arch, normalization)
    model = loaded.model.to(dev, memory_format=torch.channels_last)
    cfg = loaded.config
    dataset = dataset or cfg.get("dataset")
    data_dir = data_dir or cfg.get("data_dir")
    if not dataset or not data_dir:
        raise ValueError(f"{model_path}: say --dataset and --data-dir (the file does not)")
    if scales:  # before any image is read: a bad scale fails in every worker otherwise
        # ImageFolder views keep their aspect ratio, one image a batch; take 2:1 as the widest
        views = batch_size if KINDS.get(dataset.lower()) == "memory" else 2
        check_scales(model, scales, loaded.image_size, views, dev)
    # The statistics the model was trained with, not ones refitted to this data.
    data = run_data(
        cfg, loaded.image_size, dataset, data_dir, batch_size, dev, split, loaded.normalization
    )
    if loaded.recorded_classes and data.classes != loaded.classes:
        raise ValueError(
            f"{model_path}: the model was trained on classes {loaded.classes[:5]}..., "
            f"but {data_dir} has {data.classes[:5]}..."
        )
    if len(data.classes) != len(loaded.classes):  # scores against other labels mean nothing
        raise ValueError(
            f"{model_path}: a {len(loaded.classes)}-way classifier cannot be scored on "
            f"{len(data.classes)} classes in {data_dir}"
        )
    try:
        data.eval_loader(split)
    except DatasetError:
        held = " (val is held out of the training split)" if split == "val" else ""
        raise DatasetError(f"{data_dir}: no {split!r} split to evaluate on{held}") from None
    if scales:
        loaders = [data.eval_loader(split, "full", s).epoch(0) for s in scales]
        view = "scales-" + "-".join(map(str, scales))
        res = evaluate(model, *loaders, flip=flip, shift=shift, predictions=predictions)
    else:
        view = "ten-crop" if ten_crop else "center"
        res = evaluate(
            model,
            data.eval_loader(split, view).epoch(0),
            flip=flip,
            shift=shift,
            predictions=predictions,
        )
    view += ("-flip" if flip else "") + (f"-shift{shift}" if shift else "")
    return {**res, "split": split, "view": view, "checkpoint": str(loaded.file)}


def check_scales(
    model: nn.Module, scales: list[int], image_size: int, views: int, device: torch.device
) -> None:
    """Refuse, in one line, a scale (the paper's units: 224 = the crop of a 224 network)
    whose view is smaller than the network's total stride (its last feature map would
    have no pixel of its own) or whose batch of `views` images does not fit in memory."""
    stride, widest = _probe(model, image_size)
    smallest = min(scales)
    if scaled(smallest, image_size) < stride:
        low = math.ceil((stride - 0.5) * 224 / image_size)
        raise ValueError(
            f"--scales {smallest} is too small: a {scaled(smallest, image_size)} px "
            f"view for this {image_size} px network, which shrinks its input "
            f"{stride}x; the smallest scale is {low}"
        )
    if device.type == "cuda":
        limit, where = torch.cuda.mem_get_info(device)[0], f"{device}'s free memory"
    elif device.type == "cpu":
        limit, where = available()
    else:
        return
    per_px = 4 * _COPIES * (3 + widest) * views  # bytes per pixel of one view, whole batch
    largest = max(scales)
    px = scaled(largest, image_size)
    if px * px * per_px > limit:
        fits = math.floor(math.sqrt(limit / per_px) * 224 / image_size)
        raise ValueError(
            f"--scales {largest}: a batch of {views} views of {px} px needs about "
            f"{px * px * per_px / GIB:.1f} GiB and {where} gives "
            f"{limit / GIB:.1f} GiB; the largest scale that fits is {fits}"
        )


def _probe(model: nn.Module, size: int) -> tuple[int, float]:
    """(total stride, widest leaf output in elements per input pixel) of the network,
    from one forward on the meta device (no memory, no time)."""
    args = getattr(model, "build_args", None)
    if args is None:  # a module reslab did not build: assume an ImageNet-like net
        return 32, 64.0
    widest = [0]

    def hook(m: nn.Module, i: object, o: torch.Tensor) -> None:
        widest[0] = max(widest[0], o.numel())

    with torch.device("meta"):
        net = build(**args).eval()
        for m in net.modules():
            if not list(m.children()):
                m.register_forward_hook(hook)
        with torch.no_grad():
            side = net.forward_features(torch.empty(1, 3, size, size)).shape[-1]
    return math.ceil(size / side), widest[0] / (size * size)
