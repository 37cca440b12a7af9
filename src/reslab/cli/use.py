"""`reslab predict` and `reslab export`: parse, call reslab.inference, print."""

from __future__ import annotations

import argparse
import json
import sys

from . import preprocessing


def _predict(args: argparse.Namespace) -> int:
    from ..inference import predict

    for flag, value in (("--batch-size", args.batch_size), ("--top", args.top)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    results = predict(args.model, args.images, top=args.top, batch_size=args.batch_size,
                      arch=args.arch, normalization=preprocessing.normalization(args))  # fmt: skip
    if not results:
        print("reslab predict: no images found", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=1))
    for r in results:
        if "error" in r:
            print(f"{r['path']}: error: {r['error']}", file=sys.stderr)
        elif not args.json:
            best = ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top"])
            print(f"{r['path']}: {best}")
    # 0 only when every image was classified; bad files were reported above.
    return 0 if all("top" in r for r in results) else 1


def _export(args: argparse.Namespace) -> int:
    from ..inference import export

    out = export(args.model, args.format, args.out, arch=args.arch, opset=args.opset)
    print(f"wrote {out} (checked against PyTorch on a batch of 2)")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """Register `predict` and `export` on the CLI's sub-parsers."""
    model_help = "run folder, reslab checkpoint, or weights file (.pth/.pt/.safetensors)"
    arch_help = "architecture for a plain state dict (default: inferred from its keys)"

    p = sub.add_parser("predict", help="classify image files with a trained network")
    p.add_argument("model", help=model_help)
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--top", type=int, default=5, help="classes shown per image")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--arch", default=None, help=arch_help)
    preprocessing.add_flags(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("export", help="write a BN-folded ONNX or TorchScript file")
    p.add_argument("model", help=model_help)
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--arch", default=None, help=arch_help)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.set_defaults(func=_export)
