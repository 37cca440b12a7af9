"""`reslab eval`: top-1/top-5 error of a trained network, in the paper's views."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import preprocessing


def _eval(args: argparse.Namespace) -> int:
    from .. import zoo
    from ..evaluation import evaluate_run
    from ..storage.files import atomic_write, refuse_existing

    scales = _scales(args.scales) if args.scales is not None else None
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out:  # before the evaluation, which can take minutes
        refuse_existing(args.out, args.overwrite, inputs=(args.model, args.data_dir))
    res = evaluate_run(
        args.model,
        data_dir=args.data_dir,
        dataset=args.dataset,
        split=args.split,
        ten_crop=args.ten_crop,
        scales=scales,
        flip=args.flip,
        shift=args.shift,
        batch_size=args.batch_size,
        device=args.device,
        arch=args.arch,
        normalization=preprocessing.normalization(args),
    )
    print(
        f"{args.split}: top-1 error {res['top1_error']:.2f}%  top-5 error "
        f"{res['top5_error']:.2f}%  ({res['n']} images, {res['view']})"
    )
    out = Path(args.out) if args.out else None
    if out is None:
        if zoo.is_name(args.model):  # shipped weights: no folder of the user's to write into
            return 0
        src = Path(args.model)
        out = (src if src.is_dir() else src.parent) / f"eval-{args.split}-{res['view']}.json"
    atomic_write(out, (json.dumps(res, indent=2) + "\n").encode())
    print(f"wrote {out}")
    return 0


def _scales(text: str) -> list[int]:
    """--scales 224,256,384: whole pixels > 0; an empty list is refused, not read as "none"."""
    example = "(the paper: 224,256,384,480,640)"
    try:
        scales = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--scales must be whole numbers of pixels {example}, got {text!r}"
        ) from None
    if min(scales) < 1:
        raise ValueError(f"--scales must be > 0 px {example}, got {text}")
    return scales


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1/top-5 error of a trained network")
    p.add_argument(
        "model",
        help="run folder, checkpoint, torchvision/timm weights file, or shipped weights by "
        "name (e.g. cifar10:resnet56; `reslab weights` lists them)",
    )
    p.add_argument("--arch", help="architecture of a plain weights file (default: inferred)")
    p.add_argument("--data-dir", help="dataset folder (default: the run's)")
    p.add_argument("--dataset", help="dataset name (default: the run's)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--ten-crop", action="store_true", help="average 10 crops (section 3.4)")
    p.add_argument(
        "--scales", help="fully-convolutional multi-scale test, e.g. 224,256,384,480,640"
    )
    p.add_argument("--flip", action="store_true", help="also average horizontally flipped views")
    p.add_argument(
        "--shift",
        type=int,
        default=0,
        metavar="PX",
        help="also average views translated by PX pixels both ways (airbench's test-time shifts)",
    )
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out",
        help="JSON file to write, never replaced without --overwrite "
        "(default: RUN/eval-SPLIT-VIEW.json, reslab's own, updated)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    preprocessing.add_flags(p)
    p.set_defaults(func=_eval)
