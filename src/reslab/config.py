"""The run configuration: every default on one screen, each with its help, its group
and its choices beside it; recipes (recipes.py) as small overrides.

A recipe changes a few fields; a config file (--config) more; explicit user values more
still; unknown keys are errors. The resolved config is written to `RUN/config.json` and into every
checkpoint, so a run can always be rebuilt from its folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import DATASETS, is_cifar
from .recipes import RECIPES
from .storage.files import write_json

# `reslab train --help` shows the fields in these groups, in this order.
GROUPS = MODEL, DATA, OPTIMISER, SCHEDULE, EVALUATION, RUN, SYSTEM = (
    "model",
    "data",
    "optimiser",
    "schedule",
    "evaluation",
    "run and checkpoints",
    "speed and devices",
)


def setting(
    default: Any, group: str, help: str, *, choices: tuple[str, ...] = (), alias: str | None = None
) -> Any:
    """A TrainConfig field with its one line of help, its `--help` group and its choices:
    the flags (cli/config_flags.py) and the checks (check_config) are made from these."""
    meta = {"group": group, "help": help, "choices": choices, "alias": alias}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a run. The help is what `reslab train --help` shows; the default
    shown there is this one (a recipe may change it: see --recipe)."""

    # --- what to train ---
    model: str = setting("resnet20", MODEL, "network name (`reslab models` lists them)")
    shortcut: str | None = setting(
        None,
        MODEL,
        "shortcut option: A (zero-pad), B (project on change), C (all), none",
        choices=("A", "B", "C", "none"),
    )
    model_args: dict[str, Any] = setting(
        {},
        MODEL,
        "create_model overrides as JSON, e.g. "
        """'{"n": 2}' or '{"zero_init_residual": true}'""",
    )
    init: str | None = setting(
        None,
        MODEL,
        "fine-tune: start from these weights (run folder, checkpoint, state dict)",
        alias="--weights",
    )
    freeze_stages: int = setting(0, MODEL, "fine-tune: freeze the stem and this many stages")
    # --- data (reslab.data.build_data) ---
    dataset: str = setting(
        "cifar10",
        DATA,
        "; ".join(f"{k}: {d.about}" for k, d in DATASETS.items()),
        choices=tuple(DATASETS),
    )
    data_dir: str = setting(
        "data", DATA, "folder holding the dataset (archive, extracted batches or ImageFolder tree)"
    )
    val_size: int = setting(
        5000, DATA, "images held out of the training split for validation (the paper: 5000)"
    )
    split_seed: int = setting(0, DATA, "seed of the train/validation split")
    image_size: int | None = setting(
        None, DATA, "training crop, px (default: 32 CIFAR, 224 ImageFolder)"
    )
    normalize: str = setting(
        "pixel-mean",
        DATA,
        "pixel-mean (the paper: the mean image) or channel (mean/std per channel)",
        choices=("pixel-mean", "channel"),
    )
    augment: str = setting(
        "paper",
        DATA,
        "paper (crop+flip; ImageNet: scale+colour), rrc (random-resized crop), none",
        choices=("paper", "rrc", "none"),
    )
    crop_pad: int | None = setting(
        None, DATA, "CIFAR random-crop padding, px (default: image_size / 8, the paper's 4)"
    )
    cutout: int = setting(
        0, DATA, "CIFAR: side of a random square set to the mean colour, px; 0: off"
    )
    alternate_flip: bool = setting(
        False, DATA, "CIFAR: mirror each image in every other epoch (airbench)"
    )
    workers: int = setting(2, DATA, "JPEG decoding processes")
    limit: int | None = setting(None, DATA, "use only this many training images (smoke runs)")
    download: bool = setting(
        False, DATA, "fetch the official CIFAR archive (MD5-checked) if absent"
    )
    strict: bool = setting(
        False, DATA, "an unreadable image is an error (default: skipped with a warning)"
    )
    decoded_cache: bool | None = setting(
        None,
        DATA,
        "ImageFolder: train from images decoded "
        "once into a uint8 cache (default: when the split "
        "fits in $RESLAB_FOLDER_CACHE_GB, a quarter of RAM)",
    )
    # --- optimisation ---
    recipe: str = setting(
        "cifar-paper",
        OPTIMISER,
        "named preset the other flags override: "
        "cifar-paper (section 4.2), imagenet-paper (3.4), cifar-fast, "
        "cifar-speedrun (beyond the paper)",
        choices=tuple(RECIPES),
    )
    batch_size: int = setting(128, OPTIMISER, "images per optimiser step, all processes together")
    # Each step's batch in N micro-batches of batch_size / N, their gradients summed before
    # the one update (timm's --grad-accum-steps): the memory of batch_size / N, the step
    # of batch_size.
    grad_accum_steps: int = setting(
        1,
        OPTIMISER,
        "split each step into this many "
        "micro-batches of batch-size/N (less memory, the same "
        "step; BN sees each micro-batch)",
    )
    # Unset, the peak lr is lr_base per lr_base_batch images scaled linearly to batch_size
    # (Goyal et al. 2017; timm's --lr-base): the paper's 0.1 is per 128 images on CIFAR and
    # per 256 on ImageNet.
    lr: float | None = setting(
        None,
        OPTIMISER,
        "peak learning rate, used as given (default: --lr-base scaled to --batch-size)",
    )
    lr_base: float = setting(
        0.1, OPTIMISER, "peak learning rate per --lr-base-batch images (linear scaling rule)"
    )
    lr_base_batch: int = setting(
        128, OPTIMISER, "the batch size --lr-base is quoted for (CIFAR 128, ImageNet 256)"
    )
    momentum: float = setting(0.9, OPTIMISER, "SGD momentum")
    nesterov: bool = setting(False, OPTIMISER, "Nesterov momentum")
    weight_decay: float = setting(1e-4, OPTIMISER, "L2 weight decay")
    decay_norm_and_bias: bool = setting(
        True, OPTIMISER, "also decay BN weights and biases (the paper does; modern recipes do not)"
    )
    label_smoothing: float = setting(0.0, OPTIMISER, "label smoothing in [0, 1)")
    ema_decay: float = setting(
        0.0, OPTIMISER, "> 0: evaluate and save a moving average of the weights (timm's EMA)"
    )
    schedule: str = setting(
        "step",
        SCHEDULE,
        "step, cosine, onecycle (warm-up then linear decay) or plateau",
        choices=("step", "cosine", "onecycle", "plateau"),
    )
    iterations: int = setting(64_000, SCHEDULE, "total training steps (the paper: 64000 on CIFAR)")
    milestones: tuple[int, ...] = setting(
        (32_000, 48_000), SCHEDULE, "step schedule: multiply the lr by --gamma at these steps"
    )
    gamma: float = setting(0.1, SCHEDULE, "lr factor at each milestone or plateau")
    warmup_iters: int = setting(0, SCHEDULE, "linear lr warm-up from 0 over this many steps")
    warmup_lr: float | None = setting(
        None,
        SCHEDULE,
        "the paper's ResNet-110 warm-up: this lr "
        "until training error < --warmup-until-error (default: "
        "0.01 for >= 110 layers with cifar-paper)",
    )
    warmup_until_error: float = setting(
        0.80, SCHEDULE, "training error (fraction) that ends --warmup-lr"
    )
    plateau_patience: int = setting(
        3, SCHEDULE, "plateau schedule: evaluations without improvement before /10"
    )
    scale: float = setting(
        1.0, SCHEDULE, "multiply every step count of the recipe (0.1 = a 10x shorter schedule)"
    )
    # --- evaluation, logging, checkpoints (steps) ---
    eval_every: int = setting(
        2000, EVALUATION, "evaluate on the validation split every this many steps"
    )
    log_every: int = setting(
        100, RUN, "write a training record to metrics.jsonl every this many steps"
    )
    checkpoint_every: int = setting(1000, RUN, "save checkpoints/last.pt every this many steps")
    eval_batch_size: int = setting(500, EVALUATION, "images per evaluation batch")
    eval_flip: bool = setting(False, EVALUATION, "evaluation also scores mirrored images")
    eval_shift: int = setting(
        0, EVALUATION, "evaluation also scores images shifted by this many px both ways (airbench)"
    )
    # --- system ---
    device: str = setting(
        "auto", SYSTEM, "auto, cpu, cuda, cuda:N or mps (auto: CUDA, else MPS, else CPU)"
    )
    amp: str | None = setting(
        None,
        SYSTEM,
        "mixed precision: bf16, fp16 (with loss scaling, "
        "for GPUs without fast bf16) or off (default: bf16 on CUDA GPUs "
        "that have it, fp16 on older ones, off elsewhere)",
        choices=("bf16", "fp16", "off"),
    )
    channels_last: bool | None = setting(
        None, SYSTEM, "NHWC memory layout (default: on; measured faster on CPU and GPU)"
    )
    compile: bool | None = setting(
        None,
        SYSTEM,
        "torch.compile the model (default: on only "
        "for CIFAR nets of <= 110 layers training >= 5000 steps on "
        "a CPU, where it measured faster)",
    )
    cuda_graphs: bool = setting(
        False, SYSTEM, "CUDA: replay forward+backward as CUDA graphs (beyond the paper)"
    )
    threads: int | None = setting(None, SYSTEM, "CPU threads (default: all cores)")
    deterministic: bool = setting(False, RUN, "bit-exact runs and resumes (CPU)")
    sync_bn: bool = setting(
        False, SYSTEM, "DDP: synchronise batch-norm statistics across processes"
    )
    seed: int = setting(0, RUN, "random seed of initialisation, shuffling and augmentation")
    out: str = setting(
        "runs/run",
        RUN,
        "run folder: config.json, metrics.jsonl, checkpoints/, "
        "summary.json (default: runs/run, or runs/run-2, -3... if that holds a run)",
    )
    tensorboard: bool = setting(
        False, RUN, "also write TensorBoard logs (needs the tensorboard package)"
    )
    progress: bool = setting(True, RUN, "show a progress bar")
    ignore_memory_check: bool = setting(
        False, RUN, "train even where the memory estimate says the run cannot fit (docs/memory.md)"
    )

    def scaled(self, steps: int) -> int:
        return max(1, round(steps * self.scale))

    def peak_lr(self) -> float:
        """`lr` if given, else the linear scaling rule: lr_base x batch_size / lr_base_batch."""
        if self.lr is not None:
            return self.lr
        return self.lr_base * self.batch_size / self.lr_base_batch

    def lr_factor(self) -> float:
        """peak_lr / lr_base: how the paper's ResNet-110 warm-up rate (0.01) scales too."""
        return self.peak_lr() / self.lr_base

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if name == "amp" and isinstance(value, bool):  # configs from before fp16: on meant bf16
        return "bf16" if value else "off"
    return value


def make_config(recipe: str = "cifar-paper", **overrides: Any) -> TrainConfig:
    """TrainConfig = defaults <- recipe <- overrides, checked; unknown keys and recipes
    are errors."""
    cfg = merge_config(recipe, overrides)
    check_config(cfg)
    return cfg


def merge_config(recipe: str, overrides: dict[str, Any]) -> TrainConfig:
    """defaults <- recipe <- overrides, not yet checked (the run's gate, training/plan.py,
    checks it once); unknown keys and recipes are errors."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    names = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}"
        )
    values = {**RECIPES[recipe], **overrides, "recipe": recipe}
    cfg = TrainConfig()
    for key, value in values.items():
        setattr(cfg, key, _coerce(key, value, getattr(cfg, key)))
    return cfg


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# Lowest allowed value of the numeric fields that have one (None: unset is allowed).
_AT_LEAST: dict[str, int] = {
    "batch_size": 1, "iterations": 1, "eval_every": 1, "log_every": 1, "checkpoint_every": 1,
    "lr_base_batch": 1, "eval_batch_size": 1, "image_size": 1, "threads": 1, "limit": 1,
    "val_size": 0, "freeze_stages": 0, "warmup_iters": 0, "cutout": 0, "workers": 0,
    "eval_shift": 0, "crop_pad": 0, "plateau_patience": 0, "weight_decay": 0, "seed": 0,
    "split_seed": 0, "grad_accum_steps": 1,
}  # fmt: skip
# Fractions, with their interval: "(" or ")" leaves that end out.
_FRACTIONS = {
    "momentum": "[0, 1)",
    "ema_decay": "[0, 1)",
    "label_smoothing": "[0, 1)",
    "gamma": "(0, 1]",
    "warmup_until_error": "[0, 1]",
}
CHOICES = {
    f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig) if f.metadata["choices"]
}


def check_config(cfg: TrainConfig) -> None:
    """Every value checked before anything is built or written; messages name the key."""
    check_types(cfg)
    check_choices(cfg)
    for key, low in _AT_LEAST.items():
        value = getattr(cfg, key)
        if value is not None and value < low:
            raise ValueError(f"{key} must be >= {low}, got {value}")
    for key, interval in _FRACTIONS.items():
        value = getattr(cfg, key)
        low_ok = value > 0 if interval[0] == "(" else value >= 0
        high_ok = value < 1 if interval[-1] == ")" else value <= 1
        if not (low_ok and high_ok):
            raise ValueError(f"{key} must be in {interval}, got {value}")
    for key in ("seed", "split_seed"):  # numpy's seeds are 32-bit
        if getattr(cfg, key) >= 2**32:
            raise ValueError(f"{key} must be < 2**32, got {getattr(cfg, key)}")
    check_schedule(cfg)
    if not cfg.data_dir.strip():
        raise ValueError("data_dir is empty; give the folder that holds the dataset")
    if not _DEVICE.match(cfg.device):
        raise ValueError(f"unknown device {cfg.device!r}; choose auto, cpu, cuda, cuda:N or mps")
    if cfg.cuda_graphs and cfg.amp == "fp16":
        raise ValueError("cuda_graphs needs amp bf16 or off (fp16's loss scaling is not captured)")
    if cfg.cuda_graphs and cfg.compile:
        raise ValueError("cuda_graphs and compile exclude each other: choose one")


def check_choices(settings: Any) -> None:
    """A named choice for each field that has them (None where the field allows it), and
    the data settings that only CIFAR takes. `settings` is a TrainConfig or anything with
    some of its fields (data.DataSettings)."""
    for key, choices in CHOICES.items():
        value = getattr(settings, key, None)
        if (
            value is not None
            and value not in choices
            and not (key == "dataset" and value.lower() in choices)
        ):
            raise ValueError(f"unknown {key} {value!r}; choose {', '.join(choices)}")
    cifar = is_cifar(settings.dataset)
    if settings.augment == "rrc" and cifar:
        raise ValueError(f"augment rrc is not available for {settings.dataset}")
    for key in ("crop_pad", "cutout", "alternate_flip"):
        if getattr(settings, key) not in (None, 0, False) and not cifar:
            raise ValueError(f"{key} needs a CIFAR dataset, not {settings.dataset}")


def check_split(batch_size: int, world_size: int, grad_accum_steps: int) -> None:
    """Each process takes an equal share of a step, in equal micro-batches."""
    if batch_size % (world_size * grad_accum_steps):
        processes = f"{world_size} processes x " if world_size > 1 else ""
        raise ValueError(
            f"batch_size {batch_size} is not divisible by {processes}grad_accum_steps "
            f"{grad_accum_steps}: each step is that many equal micro-batches"
        )


def check_types(cfg: TrainConfig) -> None:
    """Each field holds its declared type: a whole number for a count (3.7 steps is not
    silently rounded), a mapping for model_args, a list of steps for milestones."""
    for name, hint in typing.get_type_hints(TrainConfig).items():
        value = getattr(cfg, name)
        kind = hint
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
            if value is None:
                continue
            kind = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(kind) or kind
        if origin is tuple:
            ok = isinstance(value, (tuple, list)) and all(_is(v, int) for v in value)
            want = "a list of integers"
        elif origin is dict:
            ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
            want = 'a mapping (a JSON object such as {"n": 2})'
        else:
            ok = _is(value, origin)
            want = _TYPE_NAMES[origin]
        if not ok:
            raise ValueError(f"{name} must be {want}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _is(value: Any, kind: type) -> bool:
    """isinstance, where a bool is not a number and an integer is a float."""
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def check_schedule(cfg: TrainConfig) -> None:
    if not 0 < cfg.scale <= 1000:
        raise ValueError(f"scale must be in (0, 1000], got {cfg.scale}")
    for key in ("lr", "lr_base", "warmup_lr"):
        if getattr(cfg, key) is not None and not getattr(cfg, key) > 0:
            raise ValueError(f"{key} must be > 0, got {getattr(cfg, key)}")
    ms = list(cfg.milestones)
    if any(m < 1 for m in ms) or any(a >= b for a, b in zip(ms, ms[1:])):
        shown = ",".join(map(str, ms))
        raise ValueError(f"milestones must be increasing steps >= 1, got {shown}")


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    write_json(path, cfg.to_dict())


MAX_CONFIG_BYTES = 1 << 20  # a config.json is ~2 KB; a larger file is not read whole


def config_edits(path: Path, saved: dict[str, Any], skip: set[str]) -> list[str]:
    """How the config.json at `path` differs from a checkpoint's config `saved`, outside
    the fields in `skip`: 'lr nan (checkpoint: 0.1)' per field; [] if the same or missing."""
    if not path.is_file():
        return []
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        return [f"the file is {size:,} bytes, not a config"]
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:
        return [f"the file is not JSON ({e})"]
    if not isinstance(data, dict):
        return [f"the file holds a {type(data).__name__}, not an object"]
    want = json.loads(json.dumps(saved))  # tuples as lists, as in the file
    missing = object()
    return [
        f"{key} {json.dumps(data.get(key, '(missing)'))} (checkpoint: "
        f"{json.dumps(want.get(key, '(missing)'))})"
        for key in [*want, *(k for k in data if k not in want)]
        if key not in skip and data.get(key, missing) != want.get(key, missing)
    ]


def load_config(path: str | Path, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """A run's config from a file, with `overrides` (flags) over it: defaults <- recipe
    <- the file <- overrides. The file is a saved RUN/config.json or a few fields; its
    recipe is used unless `recipe` is given. The file's own values are checked as it is
    read, and a bad file is one line naming it (and the key); the result is checked by
    the run's gate (training/plan.py), once.

    >>> cfg = load_config("runs/r56/config.json", seed=1)  # `reslab train --config ... --seed 1`
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: the file is {size:,} bytes, not a config")
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise ValueError(f"{path}: cannot read config: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a JSON config ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON config ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a JSON {type(data).__name__}, not an object of settings")
    try:
        check_config(merge_config(data.get("recipe", "cifar-paper"), data))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return merge_config(recipe or data.get("recipe", "cifar-paper"), {**data, **overrides})
