"""What a run needs before its first step: its data and its network on the device."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data import Data, build_data
from ..distributed import DistInfo, convert_sync_batchnorm
from ..models import create_model
from .finetune import freeze, init_from

# TrainConfig fields that build_data takes under the same name.
DATA_FIELDS = (
    "batch_size", "eval_batch_size", "val_size", "split_seed", "seed", "image_size",
    "normalize", "augment", "workers", "limit", "download", "strict", "crop_pad", "cutout",
    "alternate_flip",
)  # fmt: skip


def load_data(cfg: TrainConfig, device: torch.device, dist_info: DistInfo) -> Data:
    return build_data(
        cfg.dataset,
        os.path.expanduser(cfg.data_dir),
        device=device,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        channels_last=cfg.channels_last if cfg.channels_last is not None else True,
        **{name: getattr(cfg, name) for name in DATA_FIELDS},
    )


def build_model(
    cfg: TrainConfig, num_classes: int, device: torch.device, dist_info: DistInfo, fresh: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """The network, on `device`; with cfg.init, its weights (not its head) come from there."""
    model = create_model(
        cfg.model, num_classes=num_classes, shortcut=cfg.shortcut, **cfg.model_args
    )
    model_args = dict(model.build_args)
    if cfg.init and fresh:
        init_from(model, cfg.init)
    if cfg.freeze_stages:
        freeze(model, cfg.freeze_stages)
    if cfg.sync_bn and dist_info.enabled:
        model = convert_sync_batchnorm(model, device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else True
    model = model.to(
        device, memory_format=torch.channels_last if channels_last else torch.preserve_format
    )
    return model, model_args
