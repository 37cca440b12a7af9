"""create_model: a registered network, with weights from a file or by name if asked."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .. import zoo
from .loading import load_weights
from .registry import build


def create_model(
    name: str,
    num_classes: int | None = None,
    shortcut: str | None = None,
    weights: str | Path | None = None,
    **overrides: object,
) -> nn.Module:
    """Build a registered network, optionally changed by `overrides` (see OVERRIDES).

    `weights=PATH` loads a checkpoint or standard torchvision/timm state dict (see
    reslab.weights); `weights="cifar10"` the shipped weights for this name and
    `weights="cifar10:resnet56"` any named weights (reslab.zoo).

    >>> create_model("resnet20").spec.paper_params
    0.27
    """
    model = build(name, num_classes, shortcut, **overrides)
    if weights is None:
        return model
    if isinstance(weights, str) and ":" not in weights and zoo.is_name(f"{weights}:{name}"):
        weights = zoo.weights_for(name, weights)
    elif zoo.is_name(weights):
        weights = zoo.resolve(str(weights))
    return load_weights(model, weights)
