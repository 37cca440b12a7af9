"""DataSettings: what the data of a run is, as one typed object. Its fields are
TrainConfig's under the same names (help and choices are written there, config.py)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..config import TrainConfig


@dataclass(frozen=True)
class DataSettings:
    dataset: str
    data_dir: str
    batch_size: int  # images per step, all processes together
    eval_batch_size: int = 256
    val_size: int = 5000
    split_seed: int = 0
    seed: int = 0
    image_size: int | None = None  # None: the dataset's own (datasets.py)
    normalize: str = "pixel-mean"
    augment: str = "paper"
    workers: int = 2
    limit: int | None = None  # first `limit` training images after a seeded shuffle
    download: bool = False
    strict: bool = False
    crop_pad: int | None = None  # CIFAR; None: image_size / 8
    cutout: int = 0  # CIFAR
    alternate_flip: bool = False  # CIFAR
    decoded_cache: bool | None = None  # imagefolder; None: if the split fits

    @classmethod
    def of(cls, cfg: TrainConfig) -> DataSettings:
        """A run's data settings: its config's fields of the same names."""
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**values, "data_dir": os.path.expanduser(cfg.data_dir)})
