"""The run configuration: every default on one screen, recipes as small overrides.

A recipe changes a few fields; explicit user values change more; unknown keys are
errors. The resolved config is written to `RUN/config.json` and into every
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

from .storage.files import write_json


@dataclass
class TrainConfig:
    # --- what to train ---
    model: str = "resnet20"  # a name from reslab.list_models()
    shortcut: str | None = None  # "A" | "B" | "C" | "none"; None: the model's default
    model_args: dict[str, Any] = field(default_factory=dict)  # create_model overrides
    init: str | None = None  # fine-tune: start from these weights (run, checkpoint, state dict)
    freeze_stages: int = 0  # fine-tune: freeze the stem and this many stages
    # --- data (reslab.data.build_data) ---
    dataset: str = "cifar10"  # cifar10 | cifar100 | imagefolder
    data_dir: str = "data"
    val_size: int = 5000  # images held out of the training split (the paper's 45k/5k)
    split_seed: int = 0
    image_size: int | None = None  # training crop, px; None: 32 CIFAR, 224 ImageNet
    normalize: str = "pixel-mean"  # "pixel-mean" (the paper) | "channel"
    augment: str = "paper"  # "paper" | "rrc" | "none"
    crop_pad: int | None = None  # CIFAR random-crop padding, px; None: image_size / 8 (4 at 32)
    cutout: int = 0  # CIFAR: a random square of this side (px) set to the mean colour; 0: off
    alternate_flip: bool = False  # CIFAR: mirror each image in every other epoch (airbench)
    workers: int = 2  # JPEG decoding processes
    limit: int | None = None  # use only this many training images (smoke runs)
    download: bool = False  # fetch the official CIFAR archive (MD5-checked) if absent
    strict: bool = False  # unreadable images are an error (default: skipped, one warning)
    decoded_cache: bool | None = None  # ImageFolder: train from decoded uint8; None: if it fits
    # --- optimisation ---
    recipe: str = "cifar-paper"
    batch_size: int = 128  # images per optimiser step, all processes together
    # Split each step's batch into this many micro-batches of batch_size / N, their
    # gradients summed before the one update (timm's --grad-accum-steps): the memory of
    # batch_size / N, the step of batch_size. Batch norm sees each micro-batch alone.
    grad_accum_steps: int = 1
    # Peak learning rate. None: lr_base per lr_base_batch images, scaled linearly to
    # batch_size (Goyal et al. 2017; timm's --lr-base): the paper's 0.1 is per 128 images
    # on CIFAR and per 256 on ImageNet. A number given here is used as it is.
    lr: float | None = None
    lr_base: float = 0.1
    lr_base_batch: int = 128
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = True  # the paper decays every weight; modern recipes skip BN/bias
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # > 0: evaluate and save a moving average of the weights (timm's EMA)
    schedule: str = "step"  # step | cosine | onecycle | plateau
    iterations: int = 64_000  # total steps (the paper's CIFAR budget)
    milestones: tuple[int, ...] = (32_000, 48_000)  # step schedule: lr x gamma at each
    gamma: float = 0.1
    warmup_iters: int = 0  # linear warm-up from 0 (modern recipes)
    warmup_lr: float | None = None  # paper, ResNet-110: constant lr until...
    warmup_until_error: float = 0.80  # ...training error falls below this
    plateau_patience: int = 3  # plateau schedule: evaluations without improvement
    scale: float = 1.0  # shrink every step count (iterations, milestones, intervals)
    # --- evaluation, logging, checkpoints (steps) ---
    eval_every: int = 2000
    log_every: int = 100
    checkpoint_every: int = 1000
    eval_batch_size: int = 500
    eval_flip: bool = False  # evaluation also scores mirrored images (test-time augmentation)
    eval_shift: int = 0  # ...and images translated by this many px both ways (airbench's TTA)
    # --- system ---
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: str | None = None  # "bf16" | "fp16" (+ loss scaling) | "off"; None: best the device has
    channels_last: bool | None = None  # None: on (measured faster on CPU and GPU)
    compile: bool | None = None  # torch.compile the model; None: where measured faster
    cuda_graphs: bool = False  # CUDA: replay forward+backward as CUDA graphs (beyond the paper)
    threads: int | None = None  # CPU threads; None: all cores
    deterministic: bool = False  # bit-exact runs and resumes (CPU)
    sync_bn: bool = False  # DDP: SyncBatchNorm
    seed: int = 0
    out: str = "runs/run"
    tensorboard: bool = False
    progress: bool = True
    ignore_memory_check: bool = False  # train even where the estimate says it cannot fit

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


# Recipes: named overrides. Each says where it departs from the paper.
RECIPES: dict[str, dict[str, Any]] = {
    # Section 4.2: the defaults above are this recipe.
    "cifar-paper": {},
    # Section 3.4: batch 256, lr 0.1 divided by 10 when the error plateaus, up to 60e4 steps.
    "imagenet-paper": {
        "dataset": "imagefolder",
        "batch_size": 256,
        "lr_base_batch": 256,
        "schedule": "plateau",
        "iterations": 600_000,
        "milestones": (),
        "val_size": 10_000,
        "eval_every": 5000,
        "checkpoint_every": 2500,
        "eval_batch_size": 100,
    },
    # Beyond the paper: one-cycle-like cosine with linear warm-up, label smoothing,
    # Nesterov momentum, no weight decay on BN and biases; 20 epochs of 45k images
    # (~22 minutes for ResNet-20 on 2 CPU cores, see docs/benchmarks.md).
    "cifar-fast": {
        "schedule": "cosine",
        "iterations": 7_000,
        "milestones": (),
        "warmup_iters": 350,
        "lr_base": 0.2,
        "weight_decay": 5e-4,
        "decay_norm_and_bias": False,
        "nesterov": True,
        "label_smoothing": 0.1,
        "normalize": "channel",
        "eval_every": 700,
    },
    # Beyond the paper, and beyond its networks: the fastest way found to 90% on a CPU
    # (seeds 0-3: 90.26-90.42% validation accuracy, docs/benchmarks.md).
    # A wide, shallow residual net (models/fast.py) with the DAWNBench/airbench recipe:
    # batch 512, linear warm-up then linear decay to 0 ("onecycle"), Nesterov, label
    # smoothing 0.2, 2-px translations, alternating flips, a moving average of the
    # weights, evaluation with mirrored and 1-px shifted images too. 27.6 epochs of 45k
    # images, 19.3-25.2 minutes on 2 CPU cores (the machine's speed drifts); the search
    # is in docs/benchmarks.md.
    "cifar-speedrun": {
        "model": "fastresnet",
        "batch_size": 512,
        "lr_base_batch": 512,
        "schedule": "onecycle",
        "iterations": 2_400,
        "milestones": (),
        "warmup_iters": 480,
        "lr_base": 0.8,
        "weight_decay": 5e-4,
        "decay_norm_and_bias": False,
        "nesterov": True,
        "label_smoothing": 0.2,
        "ema_decay": 0.99,
        "normalize": "channel",
        "crop_pad": 2,
        "alternate_flip": True,
        "eval_flip": True,
        "eval_shift": 1,
        "eval_every": 800,
        "log_every": 30,
        "checkpoint_every": 100,
    },
}


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
_FRACTIONS = {"momentum": "[0, 1)", "ema_decay": "[0, 1)", "label_smoothing": "[0, 1)",
              "gamma": "(0, 1]", "warmup_until_error": "[0, 1]"}  # fmt: skip
_CHOICES: dict[str, tuple[str | None, ...]] = {
    "schedule": ("step", "cosine", "onecycle", "plateau"),
    "normalize": ("pixel-mean", "channel"),
    "augment": ("paper", "rrc", "none"),
    "amp": (None, "bf16", "fp16", "off"),
    "recipe": tuple(RECIPES),
}


def check_config(cfg: TrainConfig) -> None:
    """Every value checked before anything is built or written; messages name the key."""
    check_types(cfg)
    for key, choices in _CHOICES.items():
        if getattr(cfg, key) not in choices:
            named = ", ".join(c for c in choices if c is not None)
            raise ValueError(f"unknown {key} {getattr(cfg, key)!r}; choose {named}")
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
    return [f"{key} {json.dumps(data.get(key, '(missing)'))} (checkpoint: "
            f"{json.dumps(want.get(key, '(missing)'))})"
            for key in [*want, *(k for k in data if k not in want)]
            if key not in skip and data.get(key, missing) != want.get(key, missing)]  # fmt: skip


def load_config(path: str | Path) -> TrainConfig:
    """Read a config.json back; unknown keys are reported with the file's name."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read config: {e}") from None
    recipe = data.pop("recipe", "cifar-paper")
    try:
        return make_config(recipe, **data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
