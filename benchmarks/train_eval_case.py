"""Case 7 of benchmarks/run.py: the peak memory of a run that trains, then evaluates.

    python benchmarks/run.py --cases train-eval [--train-eval-models resnet18:128,resnet50:224]

Per model, each row in its own process tree, sampled from /proc (tree_memory.py): the
hand-written peer (`peer` below: per-sample Pillow datasets in 2-worker DataLoaders for
training and for evaluation, the default allocator), and `python -m reslab train` as a
user runs it (the CLI's glibc malloc tuning on). Both train `steps` steps at batch 32,
then evaluate the same number of held-out images' centre crops at batch 100 (reslab's
imagenet-paper recipe); "train" rows stop before the evaluation. reslab trains from its
decoded-image cache, built before the rows. The row "reslab, no malloc tuning"
(RESLAB_MALLOC_TUNING=0) shows what the tuning costs in memory and gains in speed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
EVAL_BATCH = 100  # the imagenet-paper recipe's eval_batch_size
ROWS = [  # (variant, evaluate?, environment beside the CLI's own)
    ("peer", False, {}),
    ("reslab", False, {}),
    ("reslab, no malloc tuning", False, {"RESLAB_MALLOC_TUNING": "0"}),
    ("peer", True, {}),
    ("reslab", True, {}),
]


class CenterFolder(torch.utils.data.Dataset):
    """The peer's evaluation view: shorter side to 256 (scaled), the centre square."""

    def __init__(self, paths: list[str], labels: list[int], size: int) -> None:
        from reslab.data.augment import IMAGENET_MEAN, IMAGENET_STD, scaled

        self.paths, self.labels, self.size, self.short = paths, labels, size, scaled(256, size)
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = Image.open(self.paths[i]).convert("RGB")
        w, h = img.size
        s = self.short / min(w, h)
        img = img.resize((max(self.short, round(w * s)), max(self.short, round(h * s))))
        w, h = img.size
        top, left = (h - self.size) // 2, (w - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std, self.labels[i]


def peer(p: dict) -> dict:
    """The hand-written loop: `steps` SGD steps, then (if n_val) one evaluation."""
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(HERE))
    from data_pipeline import NaiveFolder

    from reslab import create_model
    from reslab.data.build import split_indices
    from reslab.data.sources import find_tree, index_tree
    from reslab.storage.downloads import default_cache_dir

    # reslab's file list and held-out images (an archive is read where reslab unpacked it)
    index = index_tree(find_tree(Path(p["data_dir"]), default_cache_dir()))["train"]
    files = list(zip(index.paths, index.labels))
    ti, vi = split_indices(len(files), p["n_val"], 0, None)
    tr, val = [files[i] for i in ti], [files[i] for i in vi]
    model = create_model(p["model"], num_classes=len(index.classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.0125, momentum=0.9, weight_decay=1e-4)
    train = DataLoader(
        NaiveFolder([f for f, _ in tr], [y for _, y in tr], p["size"]),
        batch_size=p["batch"],
        shuffle=True,
        num_workers=2,
        drop_last=True,
    )
    model.train()
    t = 0.0
    for step, (x, y) in enumerate(train):
        if step == 1:  # the first step includes the workers' start
            t = time.perf_counter()
        if step == p["steps"]:
            break
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    res = {"images_per_s": (p["steps"] - 1) * p["batch"] / (time.perf_counter() - t)}
    del train  # its workers end here
    if p["n_val"]:
        ds = CenterFolder([f for f, _ in val], [y for _, y in val], p["size"])
        model.eval()
        right = 0
        with torch.no_grad():
            for x, y in DataLoader(ds, batch_size=EVAL_BATCH, num_workers=2):
                right += (model(x).argmax(1) == y).sum().item()
        res["val_accuracy"] = right / len(ds)
    return res


def reslab_cmd(p: dict, evaluate: bool, out: str) -> list[str]:
    """`reslab train` with the imagenet-paper recipe at this case's size and length."""
    return [
        sys.executable,
        "-m",
        "reslab",
        "train",
        "--recipe",
        "imagenet-paper",
        "--model",
        p["model"],
        "--dataset",
        "imagefolder",
        "--data-dir",
        p["data_dir"],
        "--image-size",
        str(p["size"]),
        "--batch-size",
        str(p["batch"]),
        "--iterations",
        str(p["steps"]),
        "--val-size",
        str(p["n_val"] if evaluate else 0),
        "--log-every",
        "1",
        "--out",
        out,
        "--no-progress",
        "--ignore-memory-check",
    ]


def measure_row(variant: str, evaluate: bool, env: dict, p: dict) -> dict:
    """One row in a fresh process tree: its peaks, and its training images/s."""
    sys.path.insert(0, str(HERE))
    from tree_memory import run_measured

    base = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run")
        if variant == "peer":
            q = {**p, "n_val": p["n_val"] if evaluate else 0}
            cmd = [sys.executable, __file__, json.dumps(q)]
        else:
            cmd = reslab_cmd(p, evaluate, out)
        done, peaks = run_measured(cmd, {**base, **env})
        if done.returncode != 0:
            return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:], **peaks}
        if variant == "peer":
            return {**json.loads(done.stdout.strip().splitlines()[-1]), **peaks}
        recs = [json.loads(r) for r in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        ips = [r["images_per_s"] for r in recs if r["kind"] == "train"][1:]  # after step 1
        evals = [r for r in recs if r["kind"] == "eval"]
        res = {"images_per_s": float(np.mean(ips)) if ips else float("nan"), **peaks}
        if evals:
            res["val_accuracy"] = 1 - evals[-1]["top1_error"] / 100
        return res


def build_cache(p: dict) -> None:
    """reslab's decoded-image cache of the training split, built outside the rows."""
    from reslab.data import build_data

    build_data(
        "imagefolder", p["data_dir"], batch_size=p["batch"], image_size=p["size"], val_size=0
    )


def run_case(
    quick: bool,
    data_dir: str,
    models: str,
    steps: int,
    n_val: int,
    record: Callable[[str, str, dict, dict], dict],
) -> None:
    pairs = models.split(",")[: 1 if quick else None]
    for model, size in (m.split(":") for m in pairs):
        p = {
            "model": model,
            "size": 64 if quick else int(size),
            "data_dir": data_dir,
            "batch": 8 if quick else 32,
            "steps": steps,
            "n_val": n_val,
        }
        build_cache(p)
        print(
            f"\n7. peak memory of a run that trains {p['steps']} steps, then evaluates "
            f"{p['n_val']} images: {model} at {p['size']} px, batch {p['batch']}"
        )
        base: dict[bool, dict] = {}
        for variant, evaluate, env in [r for r in ROWS if r[1]] if quick else ROWS:
            res = record(
                "train-eval",
                variant,
                {**p, "evaluate": evaluate},
                measure_row(variant, evaluate, env, p),
            )
            base.setdefault(evaluate, res)
            what = "train + eval" if evaluate else "train"
            if "error" in res:
                print(f"  {what:<13}{variant:<26} failed: {res['error']}")
                continue
            ratio = res["peak_pss_gib"] / base[evaluate].get("peak_pss_gib", float("nan"))
            print(
                f"  {what:<13}{variant:<26} PSS {res['peak_pss_gib']:5.2f} GiB "
                f"({ratio:4.2f}x peer)  RSS {res['peak_rss_gib']:5.2f} GiB  "
                f"{res['images_per_s']:6.2f} img/s"
            )


if __name__ == "__main__":  # the peer, in its own process: one JSON line
    print(json.dumps(peer(json.loads(sys.argv[1]))))
