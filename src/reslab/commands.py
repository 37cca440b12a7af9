"""Sub-commands beyond `models`: train, eval (and those of other modules)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sys
import types
import typing
from pathlib import Path

from .config import RECIPES, TrainConfig

# `reslab train --help`: every TrainConfig field in one of these groups, with one line
# of help; the default shown is the field's (a recipe may change it: see --recipe).
GROUPS: dict[str, dict[str, str]] = {
    "model": {
        "model": "network name (`reslab models` lists them)",
        "shortcut": "shortcut option: A (zero-pad), B (project on change), C (all), none",
        "model_args": "create_model overrides as JSON, e.g. '{\"n\": 2}' or "
        "'{\"zero_init_residual\": true}'",
        "init": "fine-tune: start from these weights (run folder, checkpoint, state dict)",
        "freeze_stages": "fine-tune: freeze the stem and this many stages",
    },
    "data": {
        "dataset": "cifar10, cifar100 or imagefolder (a train/<class>/ tree or archive)",
        "data_dir": "folder holding the dataset (archive, extracted batches or ImageFolder tree)",
        "val_size": "images held out of the training split for validation (the paper: 5000)",
        "split_seed": "seed of the train/validation split",
        "image_size": "training crop, px (default: 32 CIFAR, 224 ImageFolder)",
        "normalize": "pixel-mean (the paper: the mean image) or channel (mean/std per channel)",
        "augment": "paper (crop+flip; ImageNet: scale+colour), rrc (random-resized crop), none",
        "crop_pad": "CIFAR random-crop padding, px (default: image_size / 8, the paper's 4)",
        "cutout": "CIFAR: side of a random square set to the mean colour, px; 0: off",
        "alternate_flip": "CIFAR: mirror each image in every other epoch (airbench)",
        "workers": "JPEG decoding processes",
        "limit": "use only this many training images (smoke runs)",
        "download": "fetch the official CIFAR archive (MD5-checked) if absent",
        "strict": "an unreadable image is an error (default: skipped with a warning)",
    },
    "optimiser": {
        "recipe": "named preset the other flags override: cifar-paper (section 4.2), "
        "imagenet-paper (3.4), cifar-fast, cifar-speedrun (beyond the paper)",
        "batch_size": "images per step, all processes together",
        "lr": "peak learning rate, used as given (default: --lr-base scaled to --batch-size)",
        "lr_base": "peak learning rate per --lr-base-batch images (linear scaling rule)",
        "lr_base_batch": "the batch size --lr-base is quoted for (CIFAR 128, ImageNet 256)",
        "momentum": "SGD momentum",
        "nesterov": "Nesterov momentum",
        "weight_decay": "L2 weight decay",
        "decay_norm_and_bias": "also decay BN weights and biases (the paper does)",
        "label_smoothing": "label smoothing in [0, 1)",
        "ema_decay": "> 0: evaluate and save a moving average of the weights",
    },
    "schedule": {
        "schedule": "step, cosine, onecycle (warm-up then linear decay) or plateau",
        "iterations": "total training steps (the paper: 64000 on CIFAR)",
        "milestones": "step schedule: multiply the lr by --gamma at these steps",
        "gamma": "lr factor at each milestone or plateau",
        "warmup_iters": "linear lr warm-up from 0 over this many steps",
        "warmup_lr": "the paper's ResNet-110 warm-up: this lr until training error < "
        "--warmup-until-error (default: 0.01 for >= 110 layers with cifar-paper)",
        "warmup_until_error": "training error (fraction) that ends --warmup-lr",
        "plateau_patience": "plateau schedule: evaluations without improvement before /10",
        "scale": "multiply every step count of the recipe (0.1 = a 10x shorter schedule)",
    },
    "evaluation": {
        "eval_every": "evaluate on the validation split every this many steps",
        "eval_batch_size": "images per evaluation batch",
        "eval_flip": "evaluation also scores mirrored images",
        "eval_shift": "evaluation also scores images shifted by this many px both ways",
    },
    "run and checkpoints": {
        "out": "run folder: config.json, metrics.jsonl, checkpoints/, summary.json "
        "(default: runs/run, or runs/run-2, -3... if that holds a run)",
        "seed": "random seed of initialisation, shuffling and augmentation",
        "log_every": "write a training record to metrics.jsonl every this many steps",
        "checkpoint_every": "save checkpoints/last.pt every this many steps",
        "tensorboard": "also write TensorBoard logs (needs the tensorboard package)",
        "progress": "show a progress bar",
        "deterministic": "bit-exact runs and resumes (CPU)",
    },
    "speed and devices": {
        "device": "auto, cpu, cuda, cuda:N or mps (auto: CUDA, else MPS, else CPU)",
        "amp": "mixed precision: bf16, fp16 (with loss scaling, for GPUs without fast bf16) "
        "or off (default: bf16 on CUDA GPUs that have it, fp16 on older ones, off elsewhere)",
        "channels_last": "NHWC memory layout (default: on; measured faster on CPU and GPU)",
        "compile": "torch.compile the model (default: on only for CIFAR nets of <= 110 layers "
        "training >= 5000 steps on a CPU, where it measured faster)",
        "cuda_graphs": "CUDA: replay forward+backward as CUDA graphs (beyond the paper)",
        "threads": "CPU threads (default: all cores)",
        "sync_bn": "DDP: synchronise batch-norm statistics across processes",
    },
}
CHOICES = {"dataset": ["cifar10", "cifar100", "imagefolder", "imagenet", "imagenette"], "normalize": ["pixel-mean", "channel"],
           "augment": ["paper", "rrc", "none"], "shortcut": ["A", "B", "C", "none"],
           "schedule": ["step", "cosine", "onecycle", "plateau"], "amp": ["bf16", "fp16", "off"]}  # fmt: skip
EXAMPLES = """examples:
  reslab train --data-dir ~/data/cifar10 --model resnet56 --out runs/r56
      the paper's CIFAR recipe (64k steps, lr 0.1 /10 at 32k and 48k)
  reslab train --data-dir ~/data/cifar10 --scale 0.1 --out runs/short   (6,400 steps)
  reslab train --recipe imagenet-paper --data-dir ~/data/imagenette --model resnet18 \\
      --batch-size 64 --image-size 128 --iterations 2000 --out runs/in18
  reslab train --resume runs/r56            continue an interrupted run exactly
"""


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(element type, is-tuple) of a TrainConfig field, unwrapping `X | None`."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(base) is tuple:
        return typing.get_args(base)[0], True
    return base, False


def _parse_tuple(kind: type):
    def parse(text: str) -> tuple:
        return tuple(kind(v) for v in text.split(",") if v.strip())

    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--batch-size, --lr, --compile/--no-compile, ...), grouped."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    grouped = {name for group in GROUPS.values() for name in group}
    assert grouped == set(fields), f"fields without help: {set(fields) ^ grouped}"
    defaults = TrainConfig()
    for title, entries in GROUPS.items():
        group = parser.add_argument_group(title)
        for name, text in entries.items():
            f = fields[name]
            flags = ["--" + name.replace("_", "-")] + (["--weights"] if name == "init" else [])
            default = getattr(defaults, name)
            show = default not in (None, {}) and "(default:" not in text
            helptext = f"{text} (default: {default})" if show else text
            kind, is_tuple = _field_type(f)
            if kind is bool:
                group.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None,
                                   help=helptext)  # fmt: skip
            elif is_tuple:
                group.add_argument(*flags, type=_parse_tuple(kind), default=None,
                                   metavar="A,B", help=helptext)  # fmt: skip
            elif name == "model_args":
                group.add_argument(*flags, type=json.loads, default=None, metavar="JSON",
                                   help=helptext)  # fmt: skip
            elif name == "recipe":
                group.add_argument(*flags, choices=list(RECIPES), default=None, help=helptext)
            else:
                group.add_argument(*flags, type=kind, default=None, help=helptext,
                                   choices=CHOICES.get(name),
                                   metavar=None if name in CHOICES else name.upper())  # fmt: skip


def config_overrides(args: argparse.Namespace) -> dict:
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None and f.name != "recipe"
    }


def _train(args: argparse.Namespace) -> int:
    from .config import make_config
    from .storage.runlock import fresh_run_dir
    from .training.loop import train

    overrides = config_overrides(args)
    if args.resume:
        result = train(resume=args.resume, stop_after=args.stop_after, **overrides)
    else:
        cfg = make_config(args.recipe or "cifar-paper", **overrides)
        if args.out is None:  # the default folder: never reuse one that holds a run
            cfg.out = str(fresh_run_dir(cfg.out))
            print(f"run folder: {cfg.out}")
        result = train(cfg, stop_after=args.stop_after, overwrite=args.overwrite)
    if result.summary.get("final_eval") and (result.run_dir / "summary.json").exists():
        ev = result.summary["final_eval"]
        print(
            f"{result.status} at step {result.step}: {ev['split']} top-1 error "
            f"{ev['top1_error']:.2f}%, top-5 {ev['top5_error']:.2f}% -> {result.run_dir}"
        )
    if result.status == "interrupted":  # the shell's convention: 128 + the signal's number
        return 143 if result.summary.get("signal") == "SIGTERM" else 130
    return 0


def _eval(args: argparse.Namespace) -> int:
    from . import zoo
    from .evaluate_run import evaluate_run
    from .storage.files import atomic_write

    try:
        scales = [int(s) for s in args.scales.split(",")] if args.scales else None
    except ValueError:
        raise ValueError(f"--scales must be whole numbers of pixels, got {args.scales!r}") from None
    if scales is not None and min(scales) < 1:
        raise ValueError(
            f"--scales must be > 0 px (the paper: 224,256,384,480,640), got {args.scales}"
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    res = evaluate_run(
        args.model, data_dir=args.data_dir, dataset=args.dataset, split=args.split,
        ten_crop=args.ten_crop, scales=scales, flip=args.flip, shift=args.shift,
        batch_size=args.batch_size,
        device=args.device, arch=args.arch,
    )  # fmt: skip
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


def _weights(args: argparse.Namespace) -> int:
    from . import zoo

    entries = zoo.available(args.weights_dir)
    if not entries:
        print("no named weights found")
    for name, w in sorted(entries.items()):
        err = w.info.get("val_top1_error")
        where = w.file if w.file.is_file() else (w.url or "missing")
        print(f"{name:22s} {f'val top-1 error {err:.2f}%' if err is not None else '':26s} "
              f"{where}  card: {w.card or '-'}")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list the named weights (shipped and your own)")
    p.add_argument("--weights-dir", help="a folder with your own manifest.json "
                   "(default: $RESLAB_WEIGHTS_DIR)")  # fmt: skip
    p.set_defaults(func=_weights)

    p = sub.add_parser(
        "train",
        help="train a network (the main job)",
        description="Train a network. A recipe sets the defaults (shown below for "
        "cifar-paper); every flag overrides one setting.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = p.add_argument_group("resume and overwrite")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder exactly")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that --out holds (default: refuse; without --out a fresh "
        "runs/run-N is picked)",
    )
    run.add_argument(
        "--stop-after",
        type=int,
        metavar="STEP",
        help="save a checkpoint and stop at this step (resume later with --resume)",
    )
    add_config_flags(p)
    p.set_defaults(func=_train)

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
    p.add_argument("--out", help="JSON file to write (default: RUN/eval-SPLIT-VIEW.json)")
    p.set_defaults(func=_eval)

    for module, fn in (
        ("commands_use", "add_use_commands"),
        ("commands_reproduce", "add_reproduce_commands"),
    ):
        if importlib.util.find_spec(f"reslab.{module}") is not None:
            getattr(importlib.import_module(f"reslab.{module}"), fn)(sub)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `reslab`")
