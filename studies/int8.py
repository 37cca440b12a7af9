"""int8 against fp32 top-1 on held-out images (issue 18, part 1): docs/results/int8.

    python studies/int8.py --cifar-dir /work/data/cifar10-jpeg \
        --imagenette-run /work/results/int8-imagenette-r18 --out docs/results/int8

Each network is quantized by `reslab.quantize` (PT2E, x86 inductor quantizer, compiled
int8 kernels) on 512 unaugmented images of its training split, then both the fp32 net
and the int8 one are scored on the validation images carved off that split in
training (same val_size and split seed), which calibration never sees.

--write-test-images writes the fixture tests/test_quantize.py uses: 320 CIFAR-10
validation images and 512 training images (split seed 0) as JPEG grids.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reslab import provenance, zoo
from reslab.evaluation import class_scores, run_data, topk_errors
from reslab.inference import calibration_batches, load_model, quantize

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("cifar10:resnet20", "cifar10:resnet56")


def shipped_config(name: str) -> dict:
    """The training config recorded for shipped weights (its val_size and split seed):
    the weights file itself records only the dataset."""
    entry = json.loads((Path(zoo.__file__).parent / "manifest.json").read_text())[name]
    return json.loads((ROOT / entry["results"] / "config.json").read_text())


def compare(source: str, data_dir: str, cfg: dict | None = None) -> dict:
    """fp32 and int8 top-1 error and argmax agreement of one network on its validation split."""
    loaded = load_model(source)
    if cfg is not None:
        loaded.config = cfg
    cfg = loaded.config
    t = time.time()
    int8 = quantize(loaded.model, calibration_batches(loaded, data_dir, cfg["dataset"]))
    quantize_s = time.time() - t
    data = run_data(cfg, loaded.image_size, cfg["dataset"], data_dir,
                    normalization=loaded.normalization)  # fmt: skip
    fp32_scores, labels = class_scores(loaded.model, data.eval_loader("val").epoch(0))
    int8_scores, _ = class_scores(int8, data.eval_loader("val").epoch(0))
    fp32, q = topk_errors(fp32_scores, labels), topk_errors(int8_scores, labels)
    agree = (fp32_scores.argmax(1) == int8_scores.argmax(1)).float().mean().item()
    row = {
        "network": source, "model": loaded.name, "image_size": loaded.image_size,
        "val_images": len(labels), "calibration_images": 512,
        "fp32_top1": 100 - fp32["top1_error"], "int8_top1": 100 - q["top1_error"],
        "drop_points": q["top1_error"] - fp32["top1_error"], "argmax_agreement": 100 * agree,
        "quantize_s": quantize_s,
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def write_test_images(cifar_dir: str) -> None:
    loaded = load_model("cifar10:resnet20")
    data = run_data(shipped_config("cifar10:resnet20"), 32, "cifar10", cifar_dir,
                    normalization=loaded.normalization)  # fmt: skip
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
        "command": "python studies/int8.py " + " ".join(argv), "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu,
        "cpus": machine["cpus"], "torch": torch.__version__, "seed": 0,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        f"`{meta['command']}` at `{commit}`, {meta['date']}, {cpu} ({meta['cpus']} CPUs), "
        f"torch {meta['torch']}.", "",
        "| network | px | validation images | fp32 top-1 | int8 top-1 | drop (points) | argmax agreement |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['image_size']} | {r['val_images']} | {r['fp32_top1']:.2f}% "
            f"| {r['int8_top1']:.2f}% | {r['drop_points']:+.2f} | {r['argmax_agreement']:.2f}% |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-dir", required=True, help="CIFAR-10 data (archive or JPEG tree)")
    ap.add_argument("--imagenette-run", help="a reslab run folder of a net trained on Imagenette")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "int8")
    ap.add_argument("--write-test-images", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_test_images:
        write_test_images(args.cifar_dir)
        return
    torch.manual_seed(0)
    rows = [compare(name, args.cifar_dir, shipped_config(name)) for name in SHIPPED]
    if args.imagenette_run:
        cfg = json.loads((Path(args.imagenette_run) / "config.json").read_text())
        rows.append(compare(args.imagenette_run, cfg["data_dir"]))
    write_report(rows, args.out, sys.argv[1:])


if __name__ == "__main__":
    main()
