"""Parameter and multiply-add counts, as the paper reports them."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import build, get_spec, list_models


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int, in_chans: int = 3) -> int:
    """Multiply-adds of one forward pass on one image (the paper's "FLOPs", Table 1).

    torch's counter reports FLOPs = 2 x multiply-adds for convs and matmuls.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, input_size, input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


def model_rows(names: list[str] | None = None) -> list[dict[str, object]]:
    """One row per registered model: what `reslab models` prints."""
    rows = []
    for name in names or list_models():
        spec = get_spec(name)
        model = build(name)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "block": spec.block,
                "layers": spec.layers,
                "shortcut": spec.shortcut,
                "params_m": count_params(model) / 1e6,
                "input": spec.input_size,
                "gmacs": count_macs(model, spec.input_size) / 1e9,
            }
        )
    return rows


def format_table(rows: list[dict[str, object]], markdown: bool = False) -> str:
    head = ["model", "family", "layers", "shortcut", "params", "input", "FLOPs (mult-adds)"]
    body = [
        [
            str(r["name"]),
            str(r["family"]),
            str(r["layers"]),
            str(r["shortcut"]),
            f"{r['params_m']:.2f}M",
            f"{r['input']}x{r['input']}",
            f"{r['gmacs']:.3g}G",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*row) for row in [head, *body])
