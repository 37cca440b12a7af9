"""`reslab models` and `reslab weights`: what networks and named weights there are."""

from __future__ import annotations

import argparse
from pathlib import Path


def _models(args: argparse.Namespace) -> int:
    from ..models.flops import format_table, model_rows

    print(format_table(model_rows(args.names or None), markdown=args.markdown))
    return 0


def _weights(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.weights_dir is not None and not Path(args.weights_dir).expanduser().is_dir():
        raise ValueError(f"--weights-dir {args.weights_dir} is not a folder")
    entries = zoo.available(args.weights_dir)
    if not entries:
        print("no named weights found")
    for name, w in sorted(entries.items()):
        err = w.info.get("val_top1_error")
        where = w.file if w.file.is_file() else (w.url or "missing")
        print(
            f"{name:22s} {f'val top-1 error {err:.2f}%' if err is not None else '':26s} "
            f"{where}  card: {w.card or '-'}"
        )
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo with parameters and FLOPs")
    p.add_argument("names", nargs="*", help="only these models")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.set_defaults(func=_models)

    p = sub.add_parser("weights", help="list the named weights (shipped and your own)")
    p.add_argument(
        "--weights-dir", help="a folder with your own manifest.json (default: $RESLAB_WEIGHTS_DIR)"
    )
    p.set_defaults(func=_weights)
