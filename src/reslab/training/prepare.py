"""What a run needs before its first step, gathered in one `Run`: the device, the data,
the network (resumed, averaged, compiled or graphed as asked), the optimiser and the
schedule's state. The order matters for exact resumes: seeds, data, model
initialisation, then the saved state over it."""

from __future__ import annotations

import functools
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..config import TrainConfig, save_config
from ..data import Data, DataSettings
from ..data import build as data_builder
from ..data.build import Placement
from ..devices import amp_hint, set_threads
from ..distributed import DistInfo, convert_sync_batchnorm
from ..models import create_model
from ..provenance import provenance
from ..storage.runlock import Claim
from .accelerate import decide_compile, graphed
from .ema import WeightEMA
from .finetune import freeze, init_from
from .plan import Plan
from .runstate import MetricsLog, set_rng_state
from .schedule import ScheduleState, build_optimizer


@dataclass
class Run:
    """Everything the steps of one training run share."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    dist_info: DistInfo
    data: Data
    model: nn.Module  # the trained weights
    model_args: dict[str, Any]  # create_model(**model_args) rebuilds it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    log: MetricsLog
    amp_dtype: torch.dtype | None
    ema: WeightEMA | None = None
    train_model: nn.Module | None = None  # what a step calls: DDP / compiled / graphed
    eager_model: nn.Module | None = None  # the fallback should compiling fail
    may_fall_back: bool = False  # compile was chosen automatically: fall back once
    schedule: ScheduleState = field(default_factory=ScheduleState)
    step: int = 0
    best_error: float = math.inf
    saved_step: int | None = None  # the step of the latest last.pt, None before the first
    acc: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "wrong": 0, "seen": 0})
    wall_before: float = 0.0  # seconds trained before a resume
    # the command, commit and machine of this process, taken when it starts (the commit
    # can move while a long run trains); summary.json records it
    provenance: dict[str, Any] = field(default_factory=provenance)
    t0: float = field(default_factory=time.time)

    @property
    def main(self) -> bool:
        return self.dist_info.is_main

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved as "model": the weight average if there is one."""
        return self.ema.model if self.ema is not None else self.model

    @property
    def per_epoch(self) -> int:
        return len(self.data.train)

    def wall(self) -> float:
        return time.time() - self.t0 + self.wall_before


def start(run: Run, claim: Claim) -> None:
    """The run's first writes, once everything is built: the claim committed (an old run
    replaced), config.json, checkpoints/ and the metrics log (cut back on a resume)."""
    claim.commit()
    if run.main:
        (run.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_config(run.cfg, run.run_dir / "config.json")
    run.log.open()


def prepare_run(the_plan: Plan, state: dict[str, Any] | None, state_path: Path | None) -> Run:
    """Seeds, data, model and optimiser as the plan says; with `state`, the run resumed
    from it. Nothing is written to the run folder (see start())."""
    cfg, device = the_plan.cfg, the_plan.device
    dist_info = distributed.setup(device, the_plan.world)
    set_threads(cfg.threads, dist_info)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir = Path(cfg.out)
    data = load_data(cfg, device, dist_info)
    if state is not None:
        check_classes(state, data, cfg)
    model, model_args = build_model(cfg, len(data.classes), device, dist_info, state is None)
    first_images = functools.cache(lambda: next(data.train.epoch(0))[0])  # read once, if asked
    if state is None and cfg.init is None and hasattr(model, "init_from_data"):
        # Data-dependent init (fastresnet's whitening stem) from the first training batch;
        # under DDP, rank 0's result reaches every rank when DDP broadcasts the weights.
        model.init_from_data(first_images())
    dtype = the_plan.amp_dtype
    log = MetricsLog(
        run_dir / "metrics.jsonl",
        dist_info.is_main,
        state["step"] if state else None,
        cfg.tensorboard,
    )
    # fp16 needs loss scaling (bf16 has fp32's range); a disabled scaler is a no-op.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    run = Run(
        cfg,
        run_dir,
        device,
        dist_info,
        data,
        model,
        model_args,
        build_optimizer(cfg, model),
        scaler,
        log,
        dtype,
    )
    if state is not None:
        restore(run, state, state_path)
    # Made after a resume's weights are in, so an average first asked for on resume
    # starts from them, not from the fresh initialisation.
    run.ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    if run.ema is not None and state is not None and "ema_updates" in state:
        run.ema.load(state["model"], state["ema_updates"])
    accelerate(run, the_plan.family, the_plan.layers, first_images)
    return run


def check_classes(state: dict[str, Any], data: Data, cfg: TrainConfig) -> None:
    """A resume's data has the classes the checkpoint's classifier was trained on: said
    in one line before the weights load, and the folder stays resumable."""
    trained = state.get("classes")
    if trained is not None and len(trained) != len(data.classes):
        raise ValueError(
            f"{cfg.dataset} in {cfg.data_dir} has {len(data.classes)} classes and the run was "
            f"trained on {len(trained)}: --resume needs the run's data (--data-dir, --dataset); "
            "the folder is unchanged"
        )


def restore(run: Run, state: dict[str, Any], state_path: Path | None) -> None:
    """A resume checkpoint's weights, optimiser, schedule, counters and RNG, into `run`.
    With an EMA, checkpoints keep the average as "model" (what eval, export and
    fine-tuning load) and the trained weights as "train_model" (what a resume needs)."""
    run.model.load_state_dict(state.get("train_model", state["model"]))
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.schedule = ScheduleState.from_dict(state["schedule"])
    run.step, run.best_error, run.acc = state["step"], state["best"], state["interval"]
    run.saved_step = run.step
    run.wall_before = float(state.get("wall", 0.0))
    set_rng_state(state["rng"])
    if run.main:
        print(f"resuming {run.run_dir} at step {run.step} from {state_path}")


def accelerate(run: Run, family: str, layers: int, first_images: Any) -> None:
    """What a step calls: the model, wrapped by DDP, torch.compile or CUDA graphs."""
    cfg = run.cfg
    net: nn.Module = run.model
    if run.dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(run.model)
    use_compile, why = decide_compile(cfg, run.device, family, layers, run.dist_info.enabled)
    run.eager_model = net
    run.train_model = torch.compile(net) if use_compile else net
    # An automatic compile that fails on the first step falls back to eager, once. (If
    # it fails only in backward, that batch moves BN's running statistics twice.)
    run.may_fall_back = use_compile and cfg.compile is None
    if run.main and run.may_fall_back:
        print(f"compile: on ({why})")
    hint = amp_hint(cfg.amp, run.device)
    if run.main and hint:
        print(hint)
    if run.main and cfg.lr is None and cfg.batch_size != cfg.lr_base_batch:
        print(
            f"lr: {cfg.peak_lr():g} at batch {cfg.batch_size} (the recipe's {cfg.lr_base:g} "
            f"per {cfg.lr_base_batch} images, scaled linearly; --lr sets it directly)"
        )
    if cfg.cuda_graphs:
        sample = first_images().chunk(cfg.grad_accum_steps)[0]  # a micro-batch's shape
        run.train_model = graphed(run.model, sample, run.amp_dtype is not None)


def load_data(cfg: TrainConfig, device: torch.device, dist_info: DistInfo) -> Data:
    channels_last = cfg.channels_last if cfg.channels_last is not None else True
    place = Placement(device, dist_info.rank, dist_info.world_size, channels_last)
    return data_builder.load_data(DataSettings.of(cfg), place)


def build_model(
    cfg: TrainConfig, num_classes: int, device: torch.device, dist_info: DistInfo, fresh: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """The network, on `device`; with cfg.init, its weights (not its head) come from there."""
    model = create_model(
        cfg.model, num_classes=num_classes, shortcut=cfg.shortcut, **cfg.model_args
    )
    model_args = dict(model.build_args)
    if cfg.init and fresh:
        init_from(model, cfg.init)
    if cfg.freeze_stages:
        freeze(model, cfg.freeze_stages)
    if cfg.sync_bn and dist_info.enabled:
        model = convert_sync_batchnorm(model, device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else True
    model = model.to(
        device, memory_format=torch.channels_last if channels_last else torch.preserve_format
    )
    return model, model_args
