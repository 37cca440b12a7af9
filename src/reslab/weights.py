"""Standard ResNet weights in and out: torchvision/timm state dicts, safetensors, reslab checkpoints.

reslab's ImageNet networks use torchvision's parameter names (conv1, bn1,
layer1..4, downsample.0/1, fc), so loading a published checkpoint is a
key-by-key copy. Files are read with `torch.load(weights_only=True)`: a pickle
crafted to run code is refused before any object is built. A file that does not
fit the model fails with a message naming the file, the missing, unexpected and
mis-shaped keys, and the fix when only the classifier differs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .storage.checkpoint import FORMAT, CheckpointError, atomic_save, load_file
from .storage.files import atomic_write

# The evaluation transform that comes with torchvision's ImageNet weights: shorter
# side to 256, centre crop 224, then per-channel statistics on [0, 1] RGB.
IMAGENET_IMAGE_SIZE = 224
IMAGENET_NORMALIZATION: dict[str, Any] = {
    "kind": "channel",
    "input": "RGB, uint8 / 255 (values in [0, 1]), (3, H, W)",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "formula": "(x - mean) / std",
}
_WRAPPERS = ("state_dict", "model", "model_state_dict")  # keys trainers nest weights under
META_KEY = "reslab"  # safetensors metadata: JSON of how the weights were built and fed
_META_FIELDS = (
    "model_args",
    "classes",
    "normalization",
    "image_size",
    "config",
    "dataset",
    "source",
)


@functools.cache
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in label order (torchvision's names)."""
    text = resources.files("reslab").joinpath("imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


@dataclass
class WeightsFile:
    """A state dict read from disk; `checkpoint` holds a reslab checkpoint's other keys."""

    path: Path
    state_dict: dict[str, Tensor]
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        fc = self.state_dict.get("fc.weight")
        return int(fc.shape[0]) if fc is not None else None


def read_weights(path: str | Path) -> WeightsFile:
    """A state dict from .pt/.pth (plain, wrapped or a reslab checkpoint) or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return WeightsFile(path, *_read_safetensors(path))
    obj = load_file(path)
    extra: dict[str, Any] = {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        extra = {k: v for k, v in obj.items() if k in _META_FIELDS}
    for key in _WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: no state dict found (expected a dict of tensors, possibly under "
            f"{', '.join(repr(k) for k in _WRAPPERS)})"
        )
    # DistributedDataParallel and torch.compile prefix every name; the weights are the same.
    state = {_strip(k): v for k, v in obj.items()}
    if not extra and _is_akamaster(state):
        state, extra = _from_akamaster(state)
    return WeightsFile(path, state, extra)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]  # fmt: skip


def _is_akamaster(state: dict[str, Tensor]) -> bool:
    """akamaster/pytorch_resnet_cifar10's released files: `linear` for the classifier,
    option-A shortcuts without parameters, a 16-filter 3x3 stem."""
    conv1 = state.get("conv1.weight")
    return (
        "linear.weight" in state
        and "fc.weight" not in state
        and "layer1.0.conv1.weight" in state
        and conv1 is not None
        and tuple(conv1.shape) == (16, 3, 3, 3)
    )


def _from_akamaster(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Their names mapped to reslab's, and what their files do not say but their code
    did: zero-padding on both sides of the identity, ImageNet's per-channel statistics
    on [0, 1] RGB, whole 32x32 CIFAR-10 images."""
    state = {("fc." + k[7:] if k.startswith("linear.") else k): v for k, v in state.items()}
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layer1."))
    k = int(state["fc.weight"].shape[0])
    extra = {
        "model_args": {"name": f"resnet{6 * n + 2}", "num_classes": k, "shortcut_pad": "both"},
        "normalization": dict(IMAGENET_NORMALIZATION),
        "image_size": 32,
        "dataset": "cifar10" if k == 10 else "cifar100",
        "source": "akamaster/pytorch_resnet_cifar10",
    }
    if k == 10:
        extra["classes"] = list(CIFAR10_CLASSES)
    return state, extra


def _strip(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors, and what reslab recorded in the metadata (empty for foreign files)."""
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file as load_safetensors
    except ImportError:
        raise ImportError(
            f"{path}: reading .safetensors needs the safetensors package: pip install safetensors"
        ) from None
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        state = load_safetensors(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends: any failure is a bad file
        raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from None
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata {META_KEY!r} is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: metadata {META_KEY!r} must be a JSON object, got {json.dumps(meta)[:60]}"
        )
    return state, {k: v for k, v in meta.items() if k in _META_FIELDS}


def torchvision_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's weights as a plain CPU state dict in torchvision naming."""
    # reslab modules already carry torchvision's names; contiguous clones keep
    # safetensors happy (it refuses views that share storage).
    return {_strip(k): v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_torchvision(
    model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None
) -> Path:
    """Write a plain state dict (torch.save, or safetensors when path ends in .safetensors).

    `meta` (JSON: model_args, classes, normalization, image_size, dataset) goes into the
    safetensors metadata, so the file says how to build and feed the network."""
    path = Path(path)
    state = torchvision_state_dict(model)
    if path.suffix != ".safetensors":
        return atomic_save(state, path)
    try:
        from safetensors.torch import save
    except ImportError:
        raise ImportError(
            "writing .safetensors needs the safetensors package: pip install safetensors"
        ) from None
    extra = {META_KEY: json.dumps(meta)} if meta else {}
    return atomic_write(
        path, canonical_safetensors(save(state, metadata={"format": "pt", **extra}))
    )


def canonical_safetensors(blob: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: safetensors writes the metadata
    in a hash map's random order, so the same weights got a different SHA-256 each time
    they were saved. (Offsets in the header are relative to the data, so only the
    header's length prefix changes; it is padded to 8 bytes, as safetensors does.)"""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"))
    raw = header.encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + blob[8 + n :]
