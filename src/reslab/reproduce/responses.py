"""Standard deviations of layer responses (Figure 7 of the paper).

    reslab reproduce responses --runs DEGRADATION_OUT --data-dir DIR --out OUT

Section 4.2, "Analysis of Layer Responses": "The responses are the outputs of each
3x3 layer, after BN and before other nonlinearity (ReLU/addition)." So a layer's
response is the output of the batch norm that follows a 3x3 convolution: bn1 and bn2
of a BasicBlock, bn2 of a Bottleneck, and the stem's bn1 when the stem conv is 3x3
(the CIFAR networks, whose first layer the paper counts among the 6n+2; the ImageNet
7x7 stem is left out). Projection shortcuts (1x1 conv + BN) are not responses.

The std of one layer: for every channel, the standard deviation over all validation
images and positions (N, H, W), computed in float64 from running sums, then the mean
over channels. The networks run in eval mode, i.e. with BN's running statistics, as
at test time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..evaluation import run_data
from ..inference import load_model
from ..provenance import provenance
from ..storage.files import write_json


def response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) for every BN that follows a 3x3 conv, in layer order.

    Modules are visited in registration order, which is the forward order in reslab's
    networks (conv1, bn1, conv2, bn2, ... within each block, blocks in stage order).
    """
    layers, after_3x3 = [], False
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            after_3x3 = m.kernel_size == (3, 3)
        elif isinstance(m, nn.BatchNorm2d):
            if after_3x3:
                layers.append((name, m))
            after_3x3 = False
    return layers


class _Moments:
    """Per-channel running count, sum and sum of squares of one layer's output."""

    def __init__(self) -> None:
        self.n = 0
        self.s: Tensor | None = None
        self.ss: Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, out: Tensor) -> None:
        x = out.detach().to(torch.float64).transpose(0, 1).flatten(1)  # (C, N*H*W)
        s, ss = x.sum(1), (x * x).sum(1)
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n += x.shape[1]

    def std(self) -> float:
        if self.s is None or self.ss is None or self.n == 0:
            raise ValueError("layer_responses got no batches")
        mean = self.s / self.n
        var = (self.ss / self.n - mean * mean).clamp_min(0)  # population variance per channel
        return var.sqrt().mean().item()


@torch.no_grad()
def layer_responses(model: nn.Module, batches: Iterable[Any]) -> list[float]:
    """Std of every 3x3 layer's response (see the module docstring), in layer order.

    `batches` yields inputs x (B, C, H, W) or (x, y) pairs, e.g. `data.val.epoch(0)`.
    Only running sums are kept, never the activations themselves.
    """
    layers = response_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no batch norm after a 3x3 conv")
    moments = [_Moments() for _ in layers]
    handles = [bn.register_forward_hook(m) for (_, bn), m in zip(layers, moments)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [m.std() for m in moments]


def _val_batches(loaded: Any, data_dir: str | None, cache: dict) -> tuple[Any, str]:
    """The run's own validation split, built as evaluate_run does (cached per data set)."""
    cfg = loaded.config
    data_dir = data_dir or cfg.get("data_dir")
    if not cfg.get("dataset") or not data_dir:
        raise ValueError("the checkpoint does not say its data: pass data_dir")
    key = json.dumps([cfg, loaded.image_size, data_dir], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = run_data(cfg, loaded.image_size, cfg["dataset"], data_dir, 128)
    data = cache[key]
    # A run trained with val_size=0 has no held-out split: fall back to the test split.
    split = "val" if data.val is not None else "test"
    return data.eval_loader(split).epoch(0), split


def run_responses(
    runs_dir: str | Path,
    data_dir: str | None = None,
    out: str | Path | None = None,
    argv: list[str] | None = None,
) -> Path:
    """Responses of every run under RUNS_DIR/runs/ (a degradation experiment) into
    OUT/responses.json as {run name: [std per layer]}; returns OUT (default RUNS_DIR)."""
    runs_dir = Path(runs_dir)
    out = Path(out) if out is not None else runs_dir
    run_dirs = sorted(p for p in (runs_dir / "runs").glob("*") if (p / "checkpoints").is_dir())
    if not run_dirs:
        raise FileNotFoundError(
            f"{runs_dir}: no run folders with checkpoints under runs/; "
            "run `reslab reproduce degradation` first and pass its --out as --runs"
        )
    cache: dict = {}
    responses, splits = {}, set()
    for run in run_dirs:
        loaded = load_model(run)
        model = loaded.model
        batches, split = _val_batches(loaded, data_dir, cache)
        responses[run.name] = layer_responses(model, batches)
        splits.add(split)
        print(f"[responses] {run.name}: {len(responses[run.name])} layers", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "responses.json", responses, indent=1)
    if out.resolve() != runs_dir.resolve():  # a folder of its own: say what it holds
        source = runs_dir / "experiment.json"
        src_meta = json.loads(source.read_text()) if source.exists() else {}
        meta = {
            "experiment": "responses",
            "figure": "Figure 7",
            "budget": src_meta.get("budget"),
            "budget_note": src_meta.get("budget_note"),
            "seeds": src_meta.get("seeds"),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "runs_from": str(runs_dir),
            "split": sorted(splits),
            "provenance": provenance(
                argv if argv is not None else sys.argv[1:],
                data_dir or src_meta.get("provenance", {}).get("data_dir", ""),
            ),
        }
        write_json(out / "experiment.json", meta)
    return out
