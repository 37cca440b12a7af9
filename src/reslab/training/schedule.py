"""The learning rate as a pure function of the step (and the schedule's recorded events).

Two of the paper's rules depend on what training observed, not only on the step:
the ResNet-110 warm-up ends when training error first falls below 80%, and the
ImageNet recipe divides the rate when validation error plateaus. Those moments
are recorded in ScheduleState (saved in checkpoints), so that given the state the
rate is still a pure function of the step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import TrainConfig


@dataclass
class ScheduleState:
    warmup_done_at: int | None = None  # step at which the paper's warm-up ended
    drops: list[int] = field(default_factory=list)  # plateau schedule: steps of each /10
    best_error: float = math.inf  # plateau schedule: best validation error so far
    evals_since_best: int = 0

    def to_dict(self) -> dict:
        return {
            "warmup_done_at": self.warmup_done_at,
            "drops": list(self.drops),
            "best_error": self.best_error,
            "evals_since_best": self.evals_since_best,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ScheduleState:
        return cls(d["warmup_done_at"], list(d["drops"]), d["best_error"], d["evals_since_best"])


def learning_rate(cfg: TrainConfig, step: int, state: ScheduleState | None = None) -> float:
    """lr for `step` (0-based) after cfg.scale has been applied to the step counts."""
    state = state or ScheduleState()
    total = cfg.scaled(cfg.iterations)
    peak = cfg.peak_lr()
    if cfg.warmup_lr is not None and state.warmup_done_at is None:
        # paper: 0.01 until training error < 80% (scaled as lr is)
        return cfg.warmup_lr * cfg.lr_factor()
    warm = cfg.scaled(cfg.warmup_iters) if cfg.warmup_iters else 0
    if warm and step < warm:
        return peak * (step + 1) / warm
    if cfg.schedule == "step":
        passed = sum(step >= cfg.scaled(m) for m in cfg.milestones)
        return peak * cfg.gamma**passed
    if cfg.schedule == "plateau":
        return peak * cfg.gamma ** sum(step >= s for s in state.drops)
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if cfg.schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    # onecycle: linear decay to zero after the warm-up (triangular, as in fast CIFAR records)
    return peak * (1 - progress)


def observe_train_error(cfg: TrainConfig, step: int, error: float, state: ScheduleState) -> None:
    """The paper's ResNet-110 rule: leave the 0.01 warm-up once training error < 80%."""
    if (
        cfg.warmup_lr is not None
        and state.warmup_done_at is None
        and error < cfg.warmup_until_error
    ):
        state.warmup_done_at = step


def observe_val_error(cfg: TrainConfig, step: int, error: float, state: ScheduleState) -> None:
    """Plateau schedule: divide by 10 after `plateau_patience` evaluations without a new best."""
    if error < state.best_error - 1e-4:
        state.best_error, state.evals_since_best = error, 0
        return
    state.evals_since_best += 1
    if cfg.schedule == "plateau" and state.evals_since_best >= cfg.plateau_patience:
        state.drops.append(step)
        state.evals_since_best = 0


def resolve_recipe(cfg: TrainConfig, layers: int, family: str) -> TrainConfig:
    """The config with the recipe's per-model rules applied (once, when the run starts)."""
    # Section 4.2: "In this case [110 layers], we find that the initial learning rate of
    # 0.1 is slightly too large to start converging. So we use 0.01 to warm up."
    if (
        cfg.recipe == "cifar-paper"
        and family == "cifar"
        and layers >= 110
        and cfg.warmup_lr is None
    ):
        return dataclasses.replace(cfg, warmup_lr=0.01)
    return cfg


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum; BN weights and biases are decayed only if the recipe says so."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 and not cfg.decay_norm_and_bias else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(
        groups, lr=cfg.peak_lr(), momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True
    )
