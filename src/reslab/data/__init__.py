"""Data pipeline: CIFAR and ImageFolder sources, the paper's augmentation, fast loaders.

data = build_data("cifar10", "~/data", batch_size=128)
for x, y in data.train.epoch(0): ...
"""

from ..storage.downloads import default_cache_dir
from .build import Data, build_data
from .loaders import Loader
from .settings import DataSettings
from .sources import DatasetError

__all__ = ["Data", "DataSettings", "DatasetError", "Loader", "build_data", "default_cache_dir"]
