"""Measured peak memory of training runs against reslab's estimate (training/memory_estimate.py).

Each measurement is a fresh `reslab train` process (the CLI's own glibc malloc settings;
2 steps, the second with the momentum buffers; one final evaluation) on generated data:
a CIFAR-10-sized archive (60,000 images, as the estimate assumes for CIFAR) and a small
ImageFolder tree for the 224 px nets (trained from its decoded cache; no loader workers,
which the estimate counts apart). Its peak is the training process's VmHWM (peak
resident memory). The table
(estimate, measured, ratio) goes to docs/memory.md; each measurement is also appended to
--save (JSON lines), and --replay prints the table again from such a file with the
estimate as the code now computes it (after a change to its constants), measuring nothing.

    python benchmarks/memory_calibration.py [--quick] [--models resnet1202] [--save FILE]
    python benchmarks/memory_calibration.py --replay docs/benchmark-runs/memory-calibration.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reslab.cli import _MALLOC_TUNING
from reslab.config import make_config
from reslab.data.synthetic import make_cifar_archive, make_image_folder
from reslab.provenance import commit, cpu
from reslab.training import memory_estimate as memory
from reslab.training.plan import meta_model

# (model, recipe, model_args, batch sizes): the nets of issue 27, as their experiments
# train them (ResNet-1202 with activation checkpointing, as very-deep does).
CASES = [
    ("resnet18", "imagenet-paper", {}, (16, 32, 64)),
    ("resnet50", "imagenet-paper", {}, (8, 16, 32)),
    ("resnet56", "cifar-paper", {}, (128, 256, 512)),
    ("resnet1202", "cifar-paper", {"grad_checkpointing": True}, (8, 16, 32)),
]
COMMON = {
    "iterations": 2,
    "log_every": 1,
    "eval_every": 1000,
    "checkpoint_every": 1000,
    "progress": False,
    "workers": 0,
    "device": "cpu",
    "ignore_memory_check": True,
}
PER_DATASET = {
    "cifar-paper": {"dataset": "cifar10", "val_size": 100},
    "imagenet-paper": {
        "dataset": "imagefolder",
        "val_size": 16,
        "eval_batch_size": 16,
        "decoded_cache": True,
    },
}
CHILD = """
import re, sys
from reslab.cli import main
code = main(sys.argv[1:])
peak = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]
print("VMHWM_KB", peak)
sys.exit(code)
"""


def flags(settings: dict) -> list[str]:
    out = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    return out


def measure(settings: dict, work: Path) -> float:
    """Peak resident MiB of one `reslab train` process with these settings."""
    env = {**os.environ, "GLIBC_TUNABLES": _MALLOC_TUNING, "RESLAB_CACHE": str(work / "cache")}
    argv = [sys.executable, "-c", CHILD, "train", *flags(settings), "--overwrite"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("VMHWM_KB"))
    return int(line.split()[1]) / 1024


def row(m: dict) -> str:
    """A table row: the estimate for the measured run's settings, as the code computes it."""
    cfg = make_config(m["recipe"], **m["settings"])
    shape = memory.model_shape(meta_model(cfg), memory.image_size_of(cfg))
    est = memory.estimate(cfg, shape, cfg.batch_size, cfg.grad_accum_steps) / 2**20
    ckpt = " (checkpointed)" if cfg.model_args.get("grad_checkpointing") else ""
    return (
        f"| {cfg.model}{ckpt} | {memory.image_size_of(cfg)} | {cfg.batch_size} | "
        f"{est:,.0f} | {m['measured_mib']:,.0f} | {est / m['measured_mib']:.2f} |"
    )


def measurements(args: argparse.Namespace):
    """Measure each case in a fresh process, yielding {"recipe", "settings", ...}."""
    work = Path(tempfile.mkdtemp(prefix="reslab-memory-"))
    make_cifar_archive(work / "cifar" / "synthetic.tar.gz", n_train=50_000, n_test=10_000)
    make_image_folder(work / "folder", [f"c{i}" for i in range(4)], 24, 256)  # 96 images
    data = {"cifar-paper": work / "cifar", "imagenet-paper": work / "folder"}
    for model, recipe, model_args, batches in CASES:
        if args.models and model not in args.models.split(","):
            continue
        for batch in batches[:1] if args.quick else batches:
            if args.batches and str(batch) not in args.batches.split(","):
                continue
            settings = {
                "model": model,
                "model_args": model_args,
                "batch_size": batch,
                **COMMON,
                **PER_DATASET[recipe],
            }
            run = {
                **settings,
                "recipe": recipe,
                "data_dir": str(data[recipe]),
                "out": str(work / "run"),
            }
            yield {
                "recipe": recipe,
                "settings": settings,
                "measured_mib": measure(run, work),
                "cpu": cpu()["cpu"],
                "date": time.strftime("%Y-%m-%d"),
                "commit": commit(),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smallest batch of each net")
    parser.add_argument("--models", help="only these, comma-separated (e.g. resnet1202)")
    parser.add_argument("--batches", help="only these batch sizes, comma-separated")
    parser.add_argument("--save", help="append each measurement to this JSON-lines file")
    parser.add_argument("--replay", help="print the table from saved measurements instead")
    args = parser.parse_args()
    print("| model | image px | batch | estimate MiB | measured MiB | ratio |")
    print("|---|---|---|---|---|---|", flush=True)
    if args.replay:
        found = [json.loads(line) for line in Path(args.replay).read_text().splitlines() if line]
    else:
        found = measurements(args)
    for m in found:
        print(row(m), flush=True)
        if args.save:
            with open(args.save, "a") as f:
                f.write(json.dumps(m) + "\n")


if __name__ == "__main__":
    main()
