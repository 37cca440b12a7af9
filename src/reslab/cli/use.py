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
    results = predict(
        args.model,
        args.images,
        top=args.top,
        batch_size=args.batch_size,
        arch=args.arch,
        normalization=preprocessing.normalization(args),
    )
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
    from ..inference import export, read_export_metadata
    from ..storage.files import refuse_existing

    refuse_existing(args.out, args.overwrite, inputs=(args.model, args.calibration))
    out = export(
        args.model,
        args.format,
        args.out,
        arch=args.arch,
        opset=args.opset,
        int8=args.int8,
        calibration=args.calibration,
        dataset=args.dataset,
        reduce_range=args.reduce_range,
    )
    check = "the fp32 network on calibration images" if args.int8 else "PyTorch on a batch of 2"
    print(f"wrote {out} (checked against {check})")
    if args.int8:
        print(f"int8 for {read_export_metadata(out)['int8_runs_on']}")
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

    p = sub.add_parser(
        "export", help="write a BN-folded ONNX, TorchScript or torch.export file, fp32 or int8"
    )
    p.add_argument("model", help=model_help)
    p.add_argument(
        "--format",
        required=True,
        choices=("onnx", "torchscript", "pt2"),
        help="pt2: a torch.export program (int8: what reslab.quantize runs)",
    )
    p.add_argument("--out", required=True, help="output file (never replaced without --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--arch", default=None, help=arch_help)
    p.add_argument(
        "--opset", type=int, help="ONNX opset version, 10..20 (default: 17; --format onnx only)"
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantization, calibrated "
        "on training images (pt2 needs reslab[int8]; onnx: ONNX Runtime's)",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR",
        help="dataset folder whose training split calibrates --int8 (default: the run's own data)",
    )
    p.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--int8 with 7-bit activations (pt2) or weights (onnx), which CPUs "
        "without VNNI need (default: chosen by this CPU)",
    )
    p.add_argument(
        "--dataset",
        help="the kind of --calibration data (cifar10, cifar100, "
        "imagefolder) when the model does not record it",
    )
    p.set_defaults(func=_export)
