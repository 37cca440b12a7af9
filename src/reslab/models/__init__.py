"""The paper's networks: blocks, one builder per family, and a registry of named variants."""

from .blocks import SHORTCUTS, BasicBlock, Bottleneck
from .create import create_model
from .loading import infer_architecture, load_state_dict_checked, load_weights, mismatch_report
from .registry import OVERRIDES, ModelSpec, build, get_spec, list_models, spec_of
from .resnet import ResNet

__all__ = [
    "OVERRIDES",
    "SHORTCUTS",
    "BasicBlock",
    "Bottleneck",
    "ModelSpec",
    "ResNet",
    "build",
    "create_model",
    "get_spec",
    "infer_architecture",
    "list_models",
    "load_state_dict_checked",
    "load_weights",
    "mismatch_report",
    "spec_of",
]
