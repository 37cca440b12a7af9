"""Search the `cifar-speedrun` recipe on a fast machine at a fixed CPU time budget.

A run on the 2-core CPU costs ~25 minutes, so the recipe was chosen on a GPU: each
candidate network trains for the number of images it would get through in the CPU
budget (from its CPU images/s, measured with `reslab train` on the development
machine), and the validation accuracy, with and without mirrored views, is printed.
The GPU only stands in for the CPU's arithmetic: the winner is then run on the CPU
(docs/benchmarks.md) and only that run's figures are reported.

    python benchmarks/speedrun_search.py --data-dir DIR --out results.jsonl \\
        --grid '{"widths": [[64,256,256]], "lr": [0.2, 0.4]}'
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import reslab
from reslab.evaluation import evaluate

# CPU images/s of `reslab train --recipe cifar-speedrun` (batch 512, 2 cores), by
# (widths, depths); measured over 40 steps on the development machine, 2026-11-25.
CPU_IMAGES_PER_S = {
    ((64, 256, 256), (0, 1, 0)): 358,
    ((32, 128, 128), (1, 1, 1)): 924,
    ((64, 128, 256), (1, 0, 1)): 550,
    ((48, 192, 192), (1, 1, 1)): 470,
    ((64, 128, 256), (1, 1, 1)): 447,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=1380.0, help="CPU training seconds")
    ap.add_argument("--grid", default="{}", help="JSON: field -> list of values")
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    grid = json.loads(args.grid)
    nets = grid.pop("net", [[list(w), list(d)] for w, d in CPU_IMAGES_PER_S])
    keys = list(grid)
    data = None
    for (widths, depths), values, seed in itertools.product(
        nets, itertools.product(*grid.values()), range(args.seeds)
    ):
        fields = dict(zip(keys, values))
        img_s = CPU_IMAGES_PER_S[(tuple(widths), tuple(depths))]
        epochs = fields.pop("epochs", None)
        batch = fields.get("batch_size", 512)
        images = epochs * 45_000 if epochs else args.budget_s * img_s
        steps = max(1, round(images / batch))
        warm = round(steps * fields.pop("warmup_frac", 0.2))
        fields = {"amp": False, **fields}  # fp32 like the CPU unless the grid says otherwise
        cfg = reslab.make_config(
            "cifar-speedrun",
            data_dir=args.data_dir,
            out=f"/tmp/speedrun/{time.time_ns()}",
            model_args={"widths": widths, "depths": depths, **fields.pop("model_args", {})},
            iterations=steps,
            warmup_iters=warm,
            eval_every=steps,
            checkpoint_every=steps,
            progress=False,
            seed=seed,
            **fields,
        )
        t0 = time.time()
        result = reslab.train(cfg)
        if data is None:  # the same 45k/5k split and normalisation as every run
            data = reslab.build_data(
                "cifar10",
                args.data_dir,
                batch_size=512,
                eval_batch_size=1000,
                normalize="channel",
                device=result.model.fc.weight.device,
                channels_last=True,
                crop_pad=cfg.crop_pad,
            )
        plain = evaluate(result.model, data.val.epoch(0))
        flip = evaluate(result.model, data.val.epoch(0), flip=True)
        ten = evaluate(result.model, data.eval_loader("val", "ten-crop").epoch(0))
        row = {
            "widths": widths,
            "depths": depths,
            **dict(zip(keys, values)),
            "seed": seed,
            "steps": steps,
            "epochs": round(steps * batch / 45_000, 2),
            "val_acc": round(100 - plain["top1_error"], 2),
            "val_acc_flip": round(100 - flip["top1_error"], 2),
            "val_acc_10crop": round(100 - ten["top1_error"], 2),
            "gpu_s": round(time.time() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
