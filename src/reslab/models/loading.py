"""Which registered network a state dict is, and loading one into a model with checks.

A file that does not fit fails with a message naming the file, the missing,
unexpected and mis-shaped keys, the fix when only the classifier differs, and the
architecture the file looks like.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..storage.checkpoint import CheckpointError
from ..weights import read_weights
from .registry import build, get_spec, list_models, spec_of

_SHOW = 5  # keys listed per kind of mismatch


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
    # Integer or bool tensors where the model holds weights would be cast without a word.
    kinds = [
        f"{k}: file {state[k].dtype} vs model {v.dtype}"
        for k, v in own.items()
        if k in state and v.is_floating_point() and not state[k].is_floating_point()
    ]
    lines = []
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
        ("non-float weights", kinds),
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
    name = getattr(spec_of(model), "name", type(model).__name__)
    if report:
        classes = getattr(spec_of(model), "num_classes", "?")
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


# ------------------------------------------------------------------ which network is this?

_SHORTCUT_TRIES = (None, "C")  # registry default first; option C has a projection on every block


@functools.cache
def _signature(name: str, shortcut: str | None) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes (classifier excluded) of a registered net, built on meta."""
    with torch.device("meta"):  # no memory, no init cost
        model = build(name, shortcut=shortcut)
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
