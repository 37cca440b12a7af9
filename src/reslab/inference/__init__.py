"""Use a trained network: fold it for speed, quantize it to int8, classify image files,
export to ONNX/TorchScript/torch.export.

Everything accepts a model or a path: a run folder, a reslab checkpoint, or a
plain state dict (torchvision/timm/.safetensors) whose architecture is inferred
from its parameter names and shapes. Plain 1000-class files get the ImageNet
class names and the evaluation transform that comes with torchvision's weights.
"""

from ..weights import imagenet_classes
from .export_int8 import load_pt2
from .exports import export, read_export_metadata
from .int8 import Int8Network, calibration_batches, quantize
from .load import NAMED_NORMALIZATIONS, Loaded, load_model, normalization_from
from .optimize import MODES, OneDNNGraph, fold_batchnorm, optimize_for_inference
from .prediction import IMAGE_SUFFIXES, center_crop, expand_images, normalizer, predict

__all__ = [
    "IMAGE_SUFFIXES",
    "NAMED_NORMALIZATIONS",
    "Int8Network",
    "MODES",
    "Loaded",
    "OneDNNGraph",
    "calibration_batches",
    "center_crop",
    "expand_images",
    "export",
    "fold_batchnorm",
    "imagenet_classes",
    "load_model",
    "normalization_from",
    "load_pt2",
    "normalizer",
    "optimize_for_inference",
    "predict",
    "quantize",
    "read_export_metadata",
]
