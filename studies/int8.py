"""int8 against fp32 top-1 on held-out images (issues 18 and 24): docs/results/int8.

    python studies/int8.py --cifar-dir /work/data/cifar10-jpeg \
        --imagenette-run /work/results/int8-imagenette-r18 --out docs/results/int8

Each network is quantized on 512 unaugmented images of its training split, then both
the fp32 net and the int8 one are scored on the validation images carved off that split
in training (same val_size and split seed), which calibration never sees. Format pt2:
`reslab.quantize` (PT2E, x86 inductor quantizer, compiled oneDNN int8 kernels: the
program a .pt2 export holds); onnx: the int8 ONNX export run by ONNX Runtime.

--isa avx2 reruns the study capped at the AVX2 code paths of a CPU without VNNI (torch
and oneDNN; ONNX Runtime follows the CPU itself), --reduce-range on/off overrides the
automatic 7-bit choice.

--write-test-images writes the fixture tests/test_quantize.py uses: 320 CIFAR-10
validation images and 512 training images (split seed 0) as JPEG grids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from reslab import provenance, zoo
from reslab.evaluation import class_scores, run_data, topk_errors
from reslab.inference import calibration_batches, export, load_model, quantize, read_export_metadata
from reslab.inference.int8 import has_vnni

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("cifar10:resnet20", "cifar10:resnet56")


def shipped_config(name: str) -> dict:
    """The training config recorded for shipped weights (its val_size and split seed):
    the weights file itself records only the dataset."""
    entry = json.loads((Path(zoo.__file__).parent / "manifest.json").read_text())[name]
    return json.loads((ROOT / entry["results"] / "config.json").read_text())


class OnnxNet(nn.Module):
    """An ONNX file run by ONNX Runtime, callable as a module (for class_scores)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.session.run(None, {"input": x.contiguous().numpy()})[0])


def int8_net(fmt: str, loaded, calibration, reduce_range: bool | None, tmp: str):
    """The int8 network of format `fmt` and whether its activations (pt2) or weights
    (onnx) are 7-bit."""
    if fmt == "pt2":
        net = quantize(loaded.model, calibration, reduce_range=reduce_range)
        return net, net.reduce_range
    path = export(
        loaded.model,
        "onnx",
        Path(tmp) / "int8.onnx",
        int8=True,
        calibration=calibration,
        reduce_range=reduce_range,
    )
    return OnnxNet(path), read_export_metadata(path)["int8_reduce_range"]


def compare(
    source: str, data_dir: str, cfg: dict | None, formats: list[str], reduce_range: bool | None
) -> list[dict]:
    """fp32 and int8 top-1 error and argmax agreement of one network on its validation
    split, one row per int8 format."""
    loaded = load_model(source)
    if cfg is not None:
        loaded.config = cfg
    cfg = loaded.config
    data = run_data(
        cfg, loaded.image_size, cfg["dataset"], data_dir, normalization=loaded.normalization
    )
    fp32_scores, labels = class_scores(loaded.model, data.eval_loader("val").epoch(0))
    fp32 = topk_errors(fp32_scores, labels)
    rows = []
    for fmt in formats:
        t = time.time()
        calibration = calibration_batches(loaded, data_dir, cfg["dataset"])
        with tempfile.TemporaryDirectory() as tmp:
            int8, reduced = int8_net(fmt, loaded, calibration, reduce_range, tmp)
            quantize_s = time.time() - t
            int8_scores, _ = class_scores(int8, data.eval_loader("val").epoch(0))
        q = topk_errors(int8_scores, labels)
        agree = (fp32_scores.argmax(1) == int8_scores.argmax(1)).float().mean().item()
        rows.append(
            {
                "network": source,
                "model": loaded.name,
                "format": fmt,
                "reduce_range": reduced,
                "image_size": loaded.image_size,
                "val_images": len(labels),
                "calibration_images": 512,
                "fp32_top1": 100 - fp32["top1_error"],
                "int8_top1": 100 - q["top1_error"],
                "drop_points": q["top1_error"] - fp32["top1_error"],
                "argmax_agreement": 100 * agree,
                "quantize_s": quantize_s,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_test_images(cifar_dir: str) -> None:
    loaded = load_model("cifar10:resnet20")
    data = run_data(
        shipped_config("cifar10:resnet20"),
        32,
        "cifar10",
        cifar_dir,
        normalization=loaded.normalization,
    )
    rng = np.random.default_rng(0)
    for split, n, cols in (("val", 320, 20), ("train", 512, 32)):
        loader = data.eval_loader(split)
        idx = torch.from_numpy(rng.permutation(len(loader.y))[:n])
        x, y = loader.x[idx].cpu(), loader.y[idx].cpu()  # (n, 3, 32, 32) uint8
        grid = x.reshape(n // cols, cols, 3, 32, 32).permute(0, 3, 1, 4, 2)
        grid = grid.reshape(n // cols * 32, cols * 32, 3).numpy()
        out = ROOT / "tests" / "data" / f"cifar10-{split}-{n}"
        Image.fromarray(grid).save(out.with_suffix(".jpg"), quality=90)
        out.with_suffix(".txt").write_text("".join(map(str, y.tolist())) + "\n")


def write_report(rows: list[dict], out: Path, argv: list[str]) -> None:
    commit, machine = provenance.commit(), provenance.cpu()
    cpu = machine["cpu"]
    meta = {
        "command": "python studies/int8.py " + " ".join(argv),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cpus": machine["cpus"],
        "isa": machine["isa"],
        "isa_limit": machine.get("isa_limit"),
        "int8_vnni": has_vnni(),
        "torch": torch.__version__,
        "seed": 0,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    limit = machine.get("isa_limit")
    paths = (
        f"capped at the AVX2 code paths ({' '.join(f'{k}={v}' for k, v in limit.items())}; "
        "ONNX Runtime ignores the cap)"
        if limit
        else "uncapped"
    )
    lines = [
        f"`{meta['command']}` at `{commit}`, {meta['date']}, {cpu} ({meta['cpus']} CPUs; "
        f"{' '.join(machine['isa'])}), {paths}, torch {meta['torch']}.",
        "",
        "| network | format | 7-bit | px | validation images | fp32 top-1 | int8 top-1 | drop (points) | argmax agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['format']} | {'yes' if r['reduce_range'] else 'no'} "
            f"| {r['image_size']} | {r['val_images']} | {r['fp32_top1']:.2f}% "
            f"| {r['int8_top1']:.2f}% | {r['drop_points']:+.2f} | {r['argmax_agreement']:.2f}% |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-dir", required=True, help="CIFAR-10 data (archive or JPEG tree)")
    ap.add_argument("--imagenette-run", help="a reslab run folder of a net trained on Imagenette")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "int8")
    ap.add_argument("--formats", nargs="+", choices=("pt2", "onnx"), default=["pt2", "onnx"])
    ap.add_argument(
        "--isa",
        choices=sorted(provenance.ISA_LIMITS),
        help="cap torch and oneDNN at this ISA's code paths (e.g. no VNNI)",
    )
    ap.add_argument(
        "--reduce-range",
        choices=("auto", "on", "off"),
        default="auto",
        help="7-bit int8 operands (default: where the CPU, capped, lacks VNNI)",
    )
    ap.add_argument("--write-test-images", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.isa and provenance.cpu().get("isa_limit") != provenance.ISA_LIMITS[args.isa]:
        # The caps are read when torch's kernels first run, and torch is imported by
        # now: start again with them in the environment from the first line.
        provenance.limit_isa(args.isa)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.write_test_images:
        write_test_images(args.cifar_dir)
        return
    torch.manual_seed(0)
    reduce_range = {"auto": None, "on": True, "off": False}[args.reduce_range]
    rows = [
        row
        for name in SHIPPED
        for row in compare(name, args.cifar_dir, shipped_config(name), args.formats, reduce_range)
    ]
    if args.imagenette_run:
        cfg = json.loads((Path(args.imagenette_run) / "config.json").read_text())
        rows += compare(args.imagenette_run, cfg["data_dir"], None, args.formats, reduce_range)
    write_report(rows, args.out, sys.argv[1:])


if __name__ == "__main__":
    main()
