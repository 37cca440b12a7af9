"""--normalize/--mean/--std: how to feed a weights file that records no preprocessing."""

from __future__ import annotations

import argparse
from typing import Any


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.49,0.48,0.45, got {text!r}"
        ) from None


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "preprocessing of a file that records none (reslab's own files and known "
        "community ones say theirs; plain state dicts default to ImageNet's)"
    )
    group.add_argument(
        "--normalize",
        choices=("imagenet", "none", "channel"),
        help="imagenet: ImageNet's per-channel mean/std; none: pixels / 255; "
        "channel: --mean and --std",
    )
    group.add_argument("--mean", type=_floats, metavar="R,G,B", help="per-channel mean on [0, 1]")
    group.add_argument("--std", type=_floats, metavar="R,G,B", help="per-channel std on [0, 1]")


def normalization(args: argparse.Namespace) -> dict[str, Any] | None:
    from ..inference.load import normalization_from

    return normalization_from(args.normalize, args.mean, args.std)
