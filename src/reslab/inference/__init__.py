"""Use a trained network: fold it for speed, classify image files, export to ONNX/TorchScript.

Everything accepts a model or a path: a run folder, a reslab checkpoint, or a
plain state dict (torchvision/timm/.safetensors) whose architecture is inferred
from its parameter names and shapes. Plain 1000-class files get the ImageNet
class names and the evaluation transform that comes with torchvision's weights.
"""

from ..weights import imagenet_classes
from .exports import export, read_export_metadata
from .load import Loaded, load_model
from .optimize import MODES, OneDNNGraph, fold_batchnorm, optimize_for_inference
from .prediction import IMAGE_SUFFIXES, center_crop, expand_images, normalizer, predict

__all__ = [
    "IMAGE_SUFFIXES",
    "MODES",
    "Loaded",
    "OneDNNGraph",
    "center_crop",
    "expand_images",
    "export",
    "fold_batchnorm",
    "imagenet_classes",
    "load_model",
    "normalizer",
    "optimize_for_inference",
    "predict",
    "read_export_metadata",
]
