"""Load a network for use: a module, a run folder, a reslab checkpoint or a plain
state dict (torchvision/timm/.safetensors) whose architecture is inferred from its
parameter names and shapes. Plain 1000-class files get the ImageNet class names and
the evaluation transform that comes with torchvision's weights."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import zoo
from ..models import (
    build,
    get_spec,
    infer_architecture,
    load_state_dict_checked,
    mismatch_report,
    spec_of,
)
from ..storage.checkpoint import CheckpointError, resolve
from ..weights import IMAGENET_IMAGE_SIZE, IMAGENET_NORMALIZATION, imagenet_classes, read_weights


@dataclass
class Loaded:
    """A network in eval mode and what is needed to feed it a new image."""

    model: nn.Module
    classes: list[str]
    normalization: dict[str, Any]  # see reslab.data.augment.Normalizer.to_dict
    image_size: int  # centre crop, pixels; the shorter side is first resized to 256/224 of it
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # a reslab run's config, else {}
    recorded_classes: bool = False  # classes came from the checkpoint, not a default list
    recorded_normalization: bool = False  # the file says how it was fed
    file: Path | None = None  # the weights file it was read from

    @property
    def resize_shorter_side(self) -> int:
        """The evaluation view: shorter side to this, then the centre image_size crop.
        CIFAR nets saw whole images (no resize); ImageNet ones 224 of 256 (section 3.4)."""
        dataset = self.config.get("dataset")
        whole = (
            dataset in ("cifar10", "cifar100")
            if dataset
            else (getattr(spec_of(self.model), "family", "imagenet") in ("cifar", "fast"))
        )
        return self.image_size if whole else round(256 * self.image_size / 224)


# ---------------------------------------------------------------------------- loading


# What `--normalize NAME` means for a weights file that records no preprocessing.
NAMED_NORMALIZATIONS = ("imagenet", "none", "channel")


def normalization_from(
    name: str | None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> dict[str, Any] | None:
    """The normalisation record of `--normalize NAME [--mean M --std S]` (None: not given).

    "imagenet": ImageNet's per-channel statistics (torchvision's weights, and most
    community CIFAR files); "none": pixels / 255 as they are; "channel": the given
    per-channel mean and std, on [0, 1] RGB. --mean/--std alone imply "channel"."""
    if name is None and mean is None and std is None:
        return None
    name = name or "channel"
    if name not in NAMED_NORMALIZATIONS:
        raise ValueError(f"--normalize {name!r}: choose one of {', '.join(NAMED_NORMALIZATIONS)}")
    if name != "channel":
        if mean is not None or std is not None:
            raise ValueError(f"--mean/--std go with --normalize channel, not {name!r}")
        if name == "imagenet":
            return dict(IMAGENET_NORMALIZATION)
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if mean is None or std is None:
        raise ValueError("--normalize channel needs both --mean and --std (3 values each)")
    for flag, values, low in (("--mean", mean, 0.0), ("--std", std, 1e-6)):
        # Pixels are on [0, 1] before normalising: 128 or 64 here means 0-255 statistics.
        if len(values) != 3 or not all(math.isfinite(v) and low <= v <= 1 for v in values):
            raise ValueError(
                f"{flag} needs 3 numbers on [0, 1] (pixels / 255: R,G,B such as "
                f"{'0.49,0.48,0.45' if flag == '--mean' else '0.25,0.24,0.26'}), "
                f"got {','.join(f'{v:g}' for v in values)}"
            )
    return {
        **IMAGENET_NORMALIZATION,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
    }


def load_model(
    model_or_path: nn.Module | str | Path,
    arch: str | None = None,
    normalization: dict[str, Any] | None = None,
) -> Loaded:
    """A model with its classes and preprocessing, from a module, run folder or weights file.

    A bare module or plain state dict carries no preprocessing: it gets the ImageNet
    transform (and, with 1000 classes, the ImageNet names), the only one published
    with such weights, unless `normalization` (see normalization_from) says otherwise.
    Run folders, reslab checkpoints and known community files use what they record;
    `normalization` overrides that too, with a warning.
    """
    loaded = _load(model_or_path, arch)
    if normalization is not None:
        if loaded.recorded_normalization and normalization != loaded.normalization:
            warnings.warn(
                f"{loaded.file}: using the given normalisation instead of the one the file records",
                stacklevel=2,
            )
        loaded.normalization = normalization
    return loaded


def _load(model_or_path: nn.Module | str | Path, arch: str | None) -> Loaded:
    if isinstance(model_or_path, nn.Module):
        model = model_or_path
        spec = spec_of(model)
        k = int(getattr(spec, "num_classes", 0) or getattr(model, "num_classes", 0))
        size = int(getattr(spec, "input_size", IMAGENET_IMAGE_SIZE))
        return Loaded(
            model.eval(),
            _default_classes(k),
            dict(IMAGENET_NORMALIZATION),
            size,
            getattr(spec, "name", type(model).__name__),
        )
    if arch is not None:  # an unknown name is refused even where the file says what it is
        try:
            get_spec(arch)
        except ValueError as e:
            raise ValueError(f"--arch: {e}") from None
    named = zoo.entry(str(model_or_path)) if zoo.is_name(model_or_path) else None
    # "cifar10:resnet56": shipped (or user-registered) weights
    file = zoo.resolve(named.name) if named else resolve(model_or_path)
    weights = read_weights(file)
    ckpt = weights.checkpoint
    if ckpt.get("model_args"):  # a reslab checkpoint knows how it was built and fed
        args = _recorded_args(ckpt["model_args"], file)
        if arch is not None and arch != args["name"]:
            raise ValueError(f"{file} holds a {args['name']}; --arch {arch} conflicts with it")
    else:
        args = _plain_args(weights.state_dict, arch, file)
    if named and named.model != args["name"]:
        raise ValueError(
            f'{named.manifest}: entry {named.name!r} says "model": '
            f"{named.model!r}, but {file} holds a {args['name']}"
        )
    # On the meta device first: sizes read from a file (n = 1e8, widths of 1e6) are
    # matched against the file's own tensors before a byte is allocated.
    with torch.device("meta"):
        probe = build(**args)
    report = mismatch_report(probe, weights.state_dict)
    if report:
        raise CheckpointError(f"{file}: weights do not fit {args['name']}:\n{report}")
    model = build(**args)
    load_state_dict_checked(model, weights.state_dict, file)
    k = model.spec.num_classes
    classes = list(ckpt.get("classes") or _default_classes(k))
    if len(classes) != k:
        raise ValueError(f"{file}: {len(classes)} class names for a {k}-way classifier")
    # A plain state dict carries no preprocessing: the ImageNet transform is the only
    # one published with such weights, so it is the one we assume.
    norm = ckpt.get("normalization") or dict(IMAGENET_NORMALIZATION)
    size = _image_size(ckpt.get("image_size"), file) or (
        IMAGENET_IMAGE_SIZE if model.spec.family == "imagenet" else model.spec.input_size
    )
    config = dict(ckpt.get("config") or {})
    if not config and ckpt.get("dataset"):  # a weights file that says what it was trained on
        config = {"dataset": ckpt["dataset"], "val_size": 0}
    return Loaded(
        model.eval(),
        classes,
        norm,
        size,
        model.spec.name,
        config,
        bool(ckpt.get("classes")),
        bool(ckpt.get("normalization")),
        file,
    )


def _recorded_args(args: Any, file: Path) -> dict[str, Any]:
    """A file's model_args: an object naming a registered network."""
    if not isinstance(args, dict) or not isinstance(args.get("name"), str):
        raise ValueError(
            f'{file}: model_args must be an object with a network "name", got '
            f"{json.dumps(args)[:80]}"
        )
    args = dict(args)
    args.pop("grad_checkpointing", None)
    return args


MAX_IMAGE_SIZE = 4096  # px: the paper's largest test scale is 640; 100,000 would be 30 GB


def _image_size(value: Any, file: Path) -> int | None:
    """A recorded image size: a whole number of pixels in [8, MAX_IMAGE_SIZE], or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"{file}: image_size must be a whole number of pixels from 8 to "
            f"{MAX_IMAGE_SIZE}, got {json.dumps(value)[:40]}"
        )
    return value


def _plain_args(state: dict[str, Tensor], arch: str | None, file: Path) -> dict[str, Any]:
    k = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
    if arch is not None:
        return {"name": arch, "num_classes": k}
    guess = infer_architecture(state)
    if guess is None:
        raise ValueError(
            f"{file}: cannot tell which registered network these weights are for; pass arch=NAME (--arch)"
        )
    return {"name": guess[0], **guess[1]}


def _default_classes(k: int) -> list[str]:
    return imagenet_classes() if k == 1000 else [f"class_{i}" for i in range(k)]


# ---------------------------------------------------------------------------- optimisation
