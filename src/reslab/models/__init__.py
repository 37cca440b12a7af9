"""The paper's networks: blocks, one builder, and a registry of named variants."""

from .blocks import SHORTCUTS, BasicBlock, Bottleneck
from .registry import OVERRIDES, ModelSpec, create_model, get_spec, list_models
from .resnet import ResNet

__all__ = [
    "OVERRIDES",
    "SHORTCUTS",
    "BasicBlock",
    "Bottleneck",
    "ModelSpec",
    "ResNet",
    "create_model",
    "get_spec",
    "list_models",
]
