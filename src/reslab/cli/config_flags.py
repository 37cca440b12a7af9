"""TrainConfig as command-line flags: one flag per field, grouped, with one line of help."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing

from ..config import RECIPES, TrainConfig

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
        "decoded_cache": "ImageFolder: train from images decoded once into a uint8 cache "
        "(default: when the split fits in $RESLAB_FOLDER_CACHE_GB, a quarter of RAM)",
    },
    "optimiser": {
        "recipe": "named preset the other flags override: cifar-paper (section 4.2), "
        "imagenet-paper (3.4), cifar-fast, cifar-speedrun (beyond the paper)",
        "batch_size": "images per optimiser step, all processes together",
        "grad_accum_steps": "split each step into this many micro-batches of "
        "batch-size/N (less memory, the same step; BN sees each micro-batch)",
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
        "ignore_memory_check": "train even where the memory estimate says the run cannot "
        "fit (docs/memory.md)",
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
            elif name == "model_args":  # parsed by config_overrides: one line if bad
                group.add_argument(*flags, default=None, metavar="JSON", help=helptext)
            elif name == "recipe":
                group.add_argument(*flags, choices=list(RECIPES), default=None, help=helptext)
            else:
                group.add_argument(*flags, type=kind, default=None, help=helptext,
                                   choices=CHOICES.get(name),
                                   metavar=None if name in CHOICES else name.upper())  # fmt: skip


def config_overrides(args: argparse.Namespace) -> dict:
    """The config fields given as flags; --model-args parsed from JSON (a non-object is
    refused by check_config, naming the field)."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None and f.name != "recipe"
    }
    if "model_args" in given:
        try:
            given["model_args"] = json.loads(given["model_args"])
        except ValueError as e:
            raise ValueError(f"--model-args {given['model_args']!r} is not JSON ({e}); "
                             """give an object such as '{"n": 2}'""") from None  # fmt: skip
    return given


# Values that start with "-" and a digit or ".digit" ("-0.2,0.3", "-1e-3") are values, not
# flags: argparse's own rule takes only "-1" and "-.5", and "expected one argument" would
# hide the real answer ("milestones must be ... >= 1"). No reslab flag starts so.
NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def accept_negative_values(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = NEGATIVE_VALUE  # argparse's documented-nowhere hook
