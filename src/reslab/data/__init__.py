"""Data pipeline: CIFAR and ImageFolder sources, the paper's augmentation, fast loaders.

data = build_data("cifar10", "~/data", batch_size=128)
for x, y in data.train.epoch(0): ...
"""

from .build import Data, build_data
from .loaders import Loader
from .settings import DataSettings
from .sources import DatasetError, default_cache_dir

__all__ = ["Data", "DataSettings", "DatasetError", "Loader", "build_data", "default_cache_dir"]
