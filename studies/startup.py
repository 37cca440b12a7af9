"""Why deep ResNets started slowly: reslab against a hand-written reference, step by step.

Issue 14, part 1. Three measurements, written as JSON and one figure into --out:

  init     the scale of the logits and the loss at initialisation, before any step,
           for reslab's nets and the reference (plain and residual, 20/56/110 layers;
           ImageNet ResNet-18/34 at 64 px). No training: seconds.
  cifar    reslab's ResNet-56 (`reslab.train`, recipe cifar-paper) and a hand-written
           ResNet-56 in the style of akamaster/pytorch_resnet_cifar10 (option A, He
           init, torch.optim.SGD + MultiStepLR, a per-sample DataLoader) trained on the
           same 45k split, the same per-pixel-mean preprocessing, seed and lr, with the
           loss logged every 5 steps. Then both again with a 200-step linear warm-up.
  imagenet ResNet-18 and plain-18 on Imagenette (64 px, batch 64, 100 steps) at lr 0.1
           (the old cpu budget) and 0.025 (the paper's 0.1 per 256 images, scaled).

    python studies/startup.py --cifar-dir /work/data/cifar10-jpeg \\
        --imagenette-dir /work/data/imagenette --out docs/results/startup

`--steps`, `--batch`, `--in-batch` and `--limit` shrink it (the test runs it on generated data).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import reslab
from reslab.config import make_config
from reslab.data import build_data

# Imported now, not on first use: edits to the package while a long study runs cannot
# mix old and new modules.
from reslab.training.loop import train as reslab_train  # noqa: E402


# ---------------------------------------------------------------- the reference network
# Written plainly, as akamaster/pytorch_resnet_cifar10 does: nothing imported from reslab.
class RefBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.residual, self.stride, self.pad = residual, stride, (cout - cin) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.pad:  # option A, identity channels in the middle (akamaster's layout)
                short = F.pad(short, (0, 0, 0, 0, self.pad, self.pad))
            out = out + short
        return F.relu(out)


class RefResNet(nn.Module):
    def __init__(self, depth: int, residual: bool = True, num_classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(n):
                blocks.append(RefBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, residual))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # akamaster's _weights_init: He normal on convs AND linear
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


class PerSample(Dataset):
    """uint8 images (N, 3, 32, 32) -> normalised, padded-4 random crop + flip, one at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: float):
        self.x, self.y, self.mean, self.std = x, y, mean, std

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = (self.x[i].float() / 255 - self.mean) / self.std
        img = F.pad(img, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(2)
        return img, self.y[i]


# ------------------------------------------------------------------------------ helpers
def cifar_tensors(data_dir: str, limit: int | None, val_size: int):
    """The exact train/val tensors reslab trains on (same split), unnormalised uint8."""
    data = build_data("cifar10", data_dir, batch_size=128, val_size=val_size, limit=limit)
    return data.train.x, data.train.y, data.val.x, data.val.y, data.train.norm


def init_scale(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Logit scale and loss at init, and the rms of the pooled features the fc reads."""
    model.train()  # batch statistics, as on the first training step
    feats = []
    head = model.fc if hasattr(model, "fc") else model.linear
    hook = head.register_forward_hook(lambda m, inp, out: feats.append(inp[0]))
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    return {
        "logit_std": logits.std().item(),
        "loss": F.cross_entropy(logits, y).item(),
        "feature_rms": feats[0].pow(2).mean().sqrt().item(),
    }


def lr_at(step: int, lr: float, warmup: int, milestones: tuple[int, ...]) -> float:
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.1 ** sum(step >= m for m in milestones)


def train_reference(depth, tensors, steps, lr, warmup, milestones, seed, log_every, batch=128):
    tx, ty, vx, vy, norm = tensors
    torch.manual_seed(seed)
    model = RefResNet(depth)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_at(s, lr, warmup, milestones) / lr
    )  # MultiStepLR, with the optional warm-up in front
    mean, std = norm.mean, float(norm.std.flatten()[0])
    loader = DataLoader(
        PerSample(tx, ty, mean, std), batch_size=batch, shuffle=True, drop_last=True, num_workers=0
    )
    records, step, sums = [], 0, [0.0, 0, 0]
    while step < steps:
        for x, y in loader:
            model.train()
            loss = F.cross_entropy(logits := model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            sums = [
                sums[0] + loss.item() * len(y),
                sums[1] + (logits.argmax(1) != y).sum().item(),
                sums[2] + len(y),
            ]
            if step % log_every == 0:
                records.append(
                    {"step": step, "loss": sums[0] / sums[2], "error": 100 * sums[1] / sums[2]}
                )
                sums = [0.0, 0, 0]
            if step == steps:
                break
    model.eval()
    wrong = 0
    with torch.no_grad():  # the whole validation split, as reslab's run evaluates it
        for i in range(0, len(vx), 500):
            xv = (vx[i : i + 500].float() / 255 - mean) / std
            wrong += (model(xv).argmax(1) != vy[i : i + 500]).sum().item()
    return records, 100 * wrong / len(vx)


def train_reslab(model, data_dir, steps, lr, warmup, milestones, seed, log_every, out, extra):
    cfg = make_config(
        "cifar-paper",
        model=model,
        dataset="cifar10",
        data_dir=data_dir,
        out=str(out),
        iterations=steps,
        lr=lr,
        warmup_iters=warmup,
        milestones=milestones,
        seed=seed,
        log_every=log_every,
        eval_every=steps,
        checkpoint_every=steps,
        progress=False,
        compile=False,
        threads=torch.get_num_threads(),
        **extra,
    )
    result = reslab_train(cfg, overwrite=True)  # a run the study did not finish: redo it
    recs = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    train = [{k: r[k] for k in ("step", "loss", "error")} for r in recs if r["kind"] == "train"]
    return train, result.summary["final_eval"]["top1_error"]


# ------------------------------------------------------------------------------ studies
def study_init(args, tensors) -> dict:
    tx, ty, _, _, norm = tensors
    torch.manual_seed(0)
    idx = torch.randperm(len(tx))[: args.batch]
    x, y = norm(tx[idx]), ty[idx]
    rows = {}
    for depth in (20, 56, 110):
        for kind in ("plain", "resnet"):
            torch.manual_seed(0)
            rows[f"reslab {kind}{depth}"] = init_scale(reslab.create_model(f"{kind}{depth}"), x, y)
            torch.manual_seed(0)
            rows[f"reference {kind}{depth}"] = init_scale(RefResNet(depth, kind == "resnet"), x, y)
    if args.imagenette_dir:
        data = build_data(
            "imagefolder",
            args.imagenette_dir,
            batch_size=args.in_batch,
            image_size=64,
            val_size=args.val_n,
            workers=0,
            limit=args.limit,
        )
        xb, yb = next(data.train.epoch(0))
        for name in ("plain18", "resnet18", "plain34", "resnet34"):
            torch.manual_seed(0)
            model = reslab.create_model(name, num_classes=len(data.classes))
            rows[f"reslab {name} (Imagenette, 64 px)"] = init_scale(model, xb, yb)
    return rows


def study_cifar(args, tensors, runs: dict, save) -> dict:
    """Each run is saved as it ends; runs already in `runs` are not trained again."""
    s, ms = args.steps, tuple(round(args.steps * f) for f in (0.5, 0.75))
    # The paper's recipe for both; then reslab with the cpu budget's linear warm-up.
    for who, warm in (("reference", 0), ("reslab", 0), ("reslab", args.warmup)):
        tag = f"{who} resnet56, lr 0.1{', warm-up ' + str(warm) if warm else ''}"
        if tag in runs:
            continue
        t0 = time.time()
        if who == "reference":
            rec, err = train_reference(56, tensors, s, 0.1, warm, ms, args.seed, 5, args.batch)
        else:
            rec, err = train_reslab(
                "resnet56",
                args.cifar_dir,
                s,
                0.1,
                warm,
                ms,
                args.seed,
                5,
                args.work / f"resnet56-w{warm}",
                args.cifar_extra,
            )
        runs[tag] = {"train": rec, "val_error": err, "wall_s": time.time() - t0}
        save()
    return runs


def study_imagenet(args, runs: dict, save) -> dict:
    for lr in (0.1, 0.025):
        for name in ("plain18", "resnet18"):
            out = args.work / f"{name}-lr{lr}"
            if f"{name}, lr {lr}" in runs:
                continue
            cfg = make_config(
                "imagenet-paper",
                model=name,
                data_dir=args.imagenette_dir,
                out=str(out),
                image_size=64,
                batch_size=args.in_batch,
                lr=lr,
                iterations=args.in_steps,
                val_size=args.val_n,
                schedule="step",
                milestones=(),
                seed=args.seed,
                log_every=10,
                eval_every=args.in_steps,
                checkpoint_every=args.in_steps,
                progress=False,
                workers=args.workers,
                limit=args.limit,
                threads=torch.get_num_threads(),
            )
            result = reslab_train(cfg, overwrite=True)  # a run the study did not finish: redo it
            recs = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
            train = [r for r in recs if r["kind"] == "train"]
            runs[f"{name}, lr {lr}"] = {
                "train": [{k: r[k] for k in ("step", "loss", "error")} for r in train],
                "val_error": result.summary["final_eval"]["top1_error"],
            }
            save()
    return runs


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("cifar", "imagenet") if results.get(k)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for name, run in results[key].items():
            steps = [r["step"] for r in run["train"]]
            ax.plot(
                steps,
                [r["loss"] for r in run["train"]],
                ls="--" if "reference" in name or "plain" in name else "-",
                label=f"{name} (val {run['val_error']:.1f}%)",
            )
        ax.axhline(math.log(10), color="grey", lw=0.6)
        ax.set(
            xlabel="iteration",
            ylabel="training loss (interval mean)",
            ylim=(0, 6),
            title={
                "cifar": "CIFAR-10 ResNet-56: reslab vs hand-written reference",
                "imagenet": "Imagenette 64 px: lr 0.1 vs 0.025",
            }[key],
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cifar-dir", required=True)
    p.add_argument("--imagenette-dir")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=300, help="CIFAR steps per run")
    p.add_argument("--warmup", type=int, default=200, help="CIFAR warm-up steps (0: none)")
    p.add_argument("--in-steps", type=int, default=100, help="Imagenette steps per run")
    p.add_argument("--batch", type=int, default=128, help="CIFAR batch (the paper's 128)")
    p.add_argument("--in-batch", type=int, default=64, help="Imagenette batch")
    p.add_argument("--val-n", type=int, default=1000, help="validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="training images (the test uses a few)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--only", choices=("init", "cifar", "imagenet"), action="append")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work = args.out / "runs"
    args.cifar_extra = (
        {"limit": args.limit, "val_size": args.val_n} if args.limit else {"val_size": 5000}
    )
    args.cifar_extra["batch_size"] = args.batch
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "startup.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    val_size = args.val_n if args.limit else 5000
    tensors = cifar_tensors(args.cifar_dir, args.limit, val_size)
    todo = args.only or ["init", "cifar", "imagenet"]
    results["command"] = "python studies/startup.py " + " ".join(argv or sys.argv[1:])

    def save() -> None:  # after every run: an interrupted study keeps what it finished
        path.write_text(json.dumps(results, indent=1) + "\n")

    if "init" in todo:
        results["init"] = study_init(args, tensors)
        save()
    if "cifar" in todo:
        study_cifar(args, tensors, results.setdefault("cifar", {}), save)
    if "imagenet" in todo and args.imagenette_dir:
        study_imagenet(args, results.setdefault("imagenet", {}), save)
    if results.get("cifar") or results.get("imagenet"):
        plot(results, args.out / "startup.png")
    for key in ("init",):
        for name, row in results.get(key, {}).items():
            print(
                f"{name:40s} logit std {row['logit_std']:6.2f}  loss {row['loss']:5.2f}  "
                f"feature rms {row['feature_rms']:5.2f}"
            )
    for key in ("cifar", "imagenet"):
        for name, run in results.get(key, {}).items():
            first = run["train"][:2]
            print(
                f"{name:40s} first losses {[round(r['loss'], 2) for r in first]} "
                f"val {run['val_error']:.1f}%"
            )


if __name__ == "__main__":
    main()
