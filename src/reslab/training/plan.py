"""plan(cfg): may this run start, and what exactly will it be? Decided once, here.

Every check of a run happens in this file, before its folder is touched or data is
read: the config's own values, the network (one build on the meta device: no memory,
no initialisation), the split of a step over processes and micro-batches, the device,
whether the run fits in memory, the inputs (data folder, frozen stages, --init
weights), the threads and CUDA graphs. The Plan it returns holds the config
completed by the recipe's per-model rules (the paper's ResNet-110 warm-up lr), the
device and the processes; nothing after it decides those again. A resume goes through
the same gate with the checkpoint's config (plan_resume).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..config import TrainConfig, check_config, check_split, config_edits, merge_config
from ..datasets import is_cifar
from ..devices import amp_dtype, pick_device
from ..distributed import DistInfo
from ..models import build, get_spec
from .accelerate import check_cuda_graphs
from .finetune import check_fit
from .memory_estimate import check_memory, image_size_of, model_shape
from .schedule import resolve_recipe

# More threads than cores only oversubscribe: a few per core can be a deliberate trial
# (hyper-threads, a cgroup's quota), a thousand is a typo that slows every step.
THREADS_PER_CORE = 4
# What a resumed run's weights are: changed, the checkpoint no longer loads into it.
FIXED_ON_RESUME = ("model", "shortcut", "model_args")


@dataclass(frozen=True)
class Plan:
    """What a run needs from the gate: nothing here is derived again later."""

    cfg: TrainConfig  # checked, with the recipe's per-model values filled in
    device: torch.device
    world: DistInfo  # this process's rank among torchrun's processes
    amp_dtype: torch.dtype | None  # autocast's dtype; None: fp32
    family: str  # "cifar" | "imagenet" | ... (models/registry.py)
    layers: int


def plan(cfg: TrainConfig, *, resume: bool = False, inputs: bool = True) -> Plan:
    """Check `cfg` once, completely, and resolve it. `inputs=False` leaves out the data
    folder and --init weights (`reslab reproduce` checks its runs before data exists)."""
    check_config(cfg)
    return _plan_checked(cfg, resume=resume, inputs=inputs)


def plan_resume(
    run_dir: str | Path, state: dict[str, Any], state_path: Path, overrides: dict[str, Any]
) -> Plan:
    """The gate for a resume: the checkpoint's config with `overrides` (flags) over it.
    Hand edits to config.json are not applied: a warning names each field that differs,
    and start() rewrites the file from the checkpoint. A flag that would change the
    network is refused before anything loads, and the folder stays resumable."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"{state_path}: the checkpoint holds no config")
    for key in FIXED_ON_RESUME:
        if key in overrides and overrides[key] != saved.get(key):
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"{flag} {overrides[key]!r} cannot change on --resume: {run_dir} holds the "
                f"weights of {saved.get(key)!r}; resume without it (the folder is unchanged), "
                f"or start a new run from those weights with --init {run_dir}"
            )
    cfg = merge_config(saved.get("recipe", "cifar-paper"), {**saved, **overrides})
    try:
        check_config(cfg)
    except ValueError as e:
        try:
            check_config(merge_config(cfg.recipe, saved))
        except ValueError:  # the saved value is at fault, not a flag
            raise ValueError(f"{state_path}: {e}; a flag replaces the saved value") from None
        raise
    cfg.out = str(run_dir)
    path = Path(run_dir) / "config.json"
    edits = config_edits(path, saved, skip={"out", *overrides})
    if edits and distributed.from_env().is_main:
        warnings.warn(
            f"{path} differs from the checkpoint, whose config rules on a resume: "
            f"{'; '.join(edits)}. The file is rewritten from the checkpoint; change "
            "a setting with its flag (reslab train --resume RUN --iterations N)",
            stacklevel=2,
        )
    return _plan_checked(cfg, resume=True, inputs=True)


def _plan_checked(cfg: TrainConfig, *, resume: bool, inputs: bool) -> Plan:
    model = meta_model(cfg)
    world = distributed.from_env()
    check_split(cfg.batch_size, world.world_size, cfg.grad_accum_steps)
    device = pick_device(cfg.device)
    if device.type == "cpu" and not cfg.ignore_memory_check:  # a GPU holds its own
        check_memory(cfg, model_shape(model, image_size_of(cfg)), world.world_size)
    if inputs:
        check_data_dir(cfg)
    check_stages(cfg, model)
    if inputs and cfg.init and not resume:
        try:
            check_fit(model, cfg.init)
        except (OSError, ValueError) as e:  # say which flag the file came from
            raise ValueError(f"--init: {e}") from None
    check_threads(cfg.threads)
    dtype = amp_dtype(cfg.amp, device)
    if cfg.cuda_graphs:
        check_cuda_graphs(device, world.enabled, dtype)
    spec = get_spec(cfg.model)
    resolved = resolve_recipe(cfg, spec.layers, spec.family)
    return Plan(resolved, device, world, dtype, spec.family, spec.layers)


def check_run(cfg: TrainConfig) -> None:
    """What `reslab reproduce` asks of each run it plans, before any data exists."""
    plan(cfg, inputs=False)


def meta_model(cfg: TrainConfig) -> nn.Module:
    """cfg's network on the meta device: shapes only. An unknown model, shortcut or
    model argument fails here."""
    with torch.device("meta"):
        return build(cfg.model, shortcut=cfg.shortcut, **cfg.model_args)


def check_threads(threads: int | None) -> None:
    cores = os.cpu_count() or 1
    if threads is not None and threads > THREADS_PER_CORE * cores:
        raise ValueError(
            f"threads {threads} is more than {THREADS_PER_CORE} per core of this machine's "
            f"{cores}; leave it unset for all cores"
        )


def check_data_dir(cfg: TrainConfig) -> None:
    data_dir = Path(os.path.expanduser(cfg.data_dir))
    if not data_dir.exists() and not cfg.download:
        hint = " (--download fetches CIFAR into it)" if is_cifar(cfg.dataset) else ""
        raise ValueError(f"data_dir {cfg.data_dir} does not exist{hint}")


def check_stages(cfg: TrainConfig, model: nn.Module) -> None:
    stages = len(model.stages())
    if cfg.freeze_stages > stages:
        raise ValueError(
            f"freeze_stages {cfg.freeze_stages} is more than {cfg.model}'s {stages} stages"
        )


__all__ = ["Plan", "check_run", "meta_model", "plan", "plan_resume"]
