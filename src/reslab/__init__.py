"""reslab: Deep Residual Learning for Image Recognition (He et al., CVPR 2016) as software.

>>> import reslab
>>> model = reslab.create_model("resnet20")          # CIFAR-10, 0.27M params, option A
>>> reslab.list_models()[:3]
['resnet20', 'plain20', 'resnet32']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Heavier parts load on first use so `import reslab` stays quick.
_LAZY = {
    "create_model": ("reslab.models", "create_model"),
    "list_models": ("reslab.models", "list_models"),
    "train": ("reslab.training.loop", "train"),
    "TrainConfig": ("reslab.config", "TrainConfig"),
    "make_config": ("reslab.config", "make_config"),
    "evaluate": ("reslab.evaluation", "evaluate"),
    "evaluate_run": ("reslab.evaluation", "evaluate_run"),
    "optimize_for_inference": ("reslab.inference", "optimize_for_inference"),
    "predict": ("reslab.inference", "predict"),
    "export": ("reslab.inference", "export"),
    "quantize": ("reslab.inference", "quantize"),
    "load_weights": ("reslab.models", "load_weights"),
    "build_data": ("reslab.data", "build_data"),
}

__all__ = ["__version__", "create_model", "list_models", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'reslab' has no attribute {name!r}")
