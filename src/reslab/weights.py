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

import torch
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
_SHOW = 5  # keys listed per kind of mismatch
META_KEY = "reslab"  # safetensors metadata: JSON of how the weights were built and fed
_META_FIELDS = ("model_args", "classes", "normalization", "image_size", "config", "dataset",
                "source")  # fmt: skip


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
    return state, {k: v for k, v in meta.items() if k in _META_FIELDS}


def mismatch_report(model: nn.Module, state: dict[str, Tensor]) -> str:
    """Empty when `state` fits `model` exactly; else what differs, for people."""
    own = model.state_dict()
    # Checkpoints from before BN counted its batches lack num_batches_tracked; it is unused in eval.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    lines = []
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            lines.append(f"  {title} ({len(items)}): {', '.join(items[:_SHOW])}{more}")
    if not missing and not unexpected and shapes and all(s.startswith("fc.") for s in shapes):
        k = int(state["fc.weight"].shape[0])
        lines.append(
            f"  only the classifier differs: the file has {k} classes; build the model with num_classes={k}"
        )
    elif lines:
        guess = infer_architecture(state)
        if guess is not None:
            args = ", ".join(f"{k}={v!r}" for k, v in guess[1].items())
            lines.append(f"  the file looks like create_model({guess[0]!r}, {args})")
    return "\n".join(lines)


def load_state_dict_checked(
    model: nn.Module, state: dict[str, Tensor], source: str | Path
) -> nn.Module:
    """Copy `state` into `model` (strict), or raise ValueError explaining the mismatch."""
    report = mismatch_report(model, state)
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    if report:
        classes = getattr(getattr(model, "spec", None), "num_classes", "?")
        raise CheckpointError(f"{source}: weights do not fit {name} ({classes} classes):\n{report}")
    state = dict(state)
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    model.load_state_dict(state, strict=True)
    return model


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a torchvision/timm state dict, a reslab checkpoint or .safetensors into `model`."""
    weights = read_weights(path)
    need = weights.checkpoint.get("model_args", {}).get("shortcut_pad", "end")
    have = getattr(model, "build_args", {}).get("shortcut_pad") or "end"
    if need != have:  # same names and shapes, another function: refuse rather than mislead
        raise CheckpointError(
            f"{path}: these weights were trained with option-A zero padding {need!r}; build "
            f"the model with shortcut_pad={need!r} (create_model(..., shortcut_pad={need!r}))"
        )
    return load_state_dict_checked(model, weights.state_dict, path)


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
    return atomic_write(path, save(state, metadata={"format": "pt", **extra}))


# ------------------------------------------------------------------ which network is this?

_SHORTCUT_TRIES = (None, "C")  # registry default first; option C has a projection on every block


@functools.cache
def _signature(name: str, shortcut: str | None) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes (classifier excluded) of a registered net, built on meta."""
    from .models import create_model

    with torch.device("meta"):  # no memory, no init cost
        model = create_model(name, shortcut=shortcut)
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }


def infer_architecture(state: dict[str, Tensor]) -> tuple[str, dict[str, Any]] | None:
    """(registered name, create_model kwargs) whose parameters match `state`, or None.

    Residual nets are tried before their plain twins: a CIFAR option-A ResNet and
    its plain net have the same parameters, and the residual one is the usual file.
    """
    from .models import get_spec, list_models

    if "fc.weight" not in state:
        return None
    want = {
        k: tuple(v.shape)
        for k, v in state.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    names = sorted(list_models(), key=lambda n: n.startswith("plain"))
    for shortcut in _SHORTCUT_TRIES:
        for name in names:
            if shortcut is not None and (
                name.startswith("plain") or get_spec(name).builder != "resnet"
            ):
                continue  # no shortcut to change
            if _signature(name, shortcut) == want:
                kwargs: dict[str, Any] = {"num_classes": int(state["fc.weight"].shape[0])}
                if shortcut is not None:
                    kwargs["shortcut"] = shortcut
                return name, kwargs
    return None
