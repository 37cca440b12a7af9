"""Fine-tuning: start from another run's weights, and freeze the first stages."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..storage.checkpoint import resolve
from ..weights import read_weights


def init_from(model: nn.Module, source: str) -> None:
    """Copy every weight whose name and shape match, and say what was copied and what not.
    The classifier is left new when the class counts differ (fine-tuning); any other
    tensor of the model that the file lacks is an error."""
    state = read_state_dict(source)
    own = model.state_dict()
    name = model.build_args["name"]
    fitting = check_fit(model, source, state)
    model.load_state_dict(fitting, strict=False)
    unused = [k for k in state if k not in fitting and not k.startswith("fc.")]
    head = "kept" if all(k in fitting for k in own if k.startswith("fc.")) else "new"
    print(f"init: {len(fitting)} of {name}'s {len(own)} tensors from {source}; classifier {head}")
    if unused:
        warnings.warn(
            f"{source}: {len(unused)} tensors of the file are not in {name} and were skipped "
            f"(e.g. {', '.join(unused[:3])}): the file is a larger or different network",
            stacklevel=2,
        )


def check_fit(
    model: nn.Module, source: str, state: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The file's tensors that fit `model` (name and shape); an error naming the file if
    any tensor but the classifier's is missing. Works on a meta-device model, so a run
    can check its --init before creating anything."""
    state = read_state_dict(source) if state is None else state
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in fitting and not k.startswith("fc.")]
    if missing:
        raise ValueError(
            f"{source}: weights do not fit {model.build_args['name']}: {len(missing)} of its "
            f"{len(own)} tensors are missing from the file or of another shape, e.g. "
            f"{', '.join(missing[:4])}"
        )
    return fitting


def read_state_dict(source: str) -> dict[str, torch.Tensor]:
    """A state dict from a run folder, a reslab checkpoint or a plain/wrapped state dict."""
    return read_weights(resolve(source)).state_dict


def freeze(model: nn.Module, stages: int) -> None:
    """Freeze the stem and the first `stages` stages (weights and BN statistics)."""
    stem = [getattr(model, n) for n in ("conv1", "bn1", "whiten") if hasattr(model, n)]
    parts: list[nn.Module] = [*stem, *model.stages()[:stages]]
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)
        for m in part.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
                m.train = lambda mode=True, m=m: m  # keep frozen stats through model.train()
