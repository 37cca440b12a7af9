"""train(config): the path of a batch, in order, and everything that keeps a run safe.

RUN/config.json          the resolved config
RUN/metrics.jsonl        one JSON record per log interval / evaluation
RUN/checkpoints/         last.pt (+ previous.pt) to resume, best.pt by validation error
RUN/summary.json         final errors, wall time, images/s
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed
from ..config import TrainConfig, check_config, make_config, save_config
from ..devices import amp_dtype, pick_device, set_threads
from ..errors import ReslabError, one_line
from ..evaluation import evaluate
from ..models import get_spec
from ..storage import checkpoint as ckpt_io
from ..storage.files import write_json
from ..storage.runlock import claim_run_dir
from .accelerate import check_cuda_graphs, decide_compile, graphed
from .ema import WeightEMA
from .prepare import build_model, load_data
from .recipes import (
    ScheduleState,
    build_optimizer,
    learning_rate,
    observe_train_error,
    observe_val_error,
    resolve_recipe,
)
from .runstate import MetricsLog, StopFlag, peak_rss_mb, rng_state, set_rng_state


class TrainingDiverged(ReslabError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "finished" | "stopped" (stop_after) | "interrupted" (signal)
    step: int
    summary: dict[str, Any]
    model: nn.Module


def sync_every_step(device: torch.device, cfg: TrainConfig, schedule: ScheduleState) -> bool:
    """Read the loss back after every step? Free on a CPU; on a GPU it would stall the
    host every step, so only while the paper's ResNet-110 warm-up waits for the training
    error to fall below its threshold."""
    warming = cfg.warmup_lr is not None and schedule.warmup_done_at is None
    return device.type == "cpu" or warming


def train(
    config: TrainConfig | dict[str, Any] | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train a network as `config` says (or resume the run in folder `resume`).

    The run folder is locked while training; a new run refuses a folder that holds a
    run unless `overwrite` (which deletes that run's files first).

    >>> result = reslab.train(make_config("cifar-paper", model="resnet20", data_dir="~/data"))
    """
    main = int(os.environ.get("RANK", "0")) == 0
    if isinstance(config, TrainConfig):
        check_config(config)  # a TrainConfig built directly skipped make_config's checks
    if resume is not None:
        with claim_run_dir(resume, resume=True, overwrite=False, main=main):
            state, state_path = ckpt_io.load_resumable(resume)
            cfg = make_config(**{**state["config"], **overrides})
            cfg.out = str(resume)
            return _train(cfg, state, state_path, stop_after)
    if isinstance(config, dict):
        config = make_config(**config)
    cfg = config or make_config()
    if overrides:
        cfg = make_config(**{**cfg.to_dict(), **overrides})
    get_spec(cfg.model)  # an unknown model fails before anything is created
    with claim_run_dir(cfg.out, resume=False, overwrite=overwrite, main=main):
        return _train(cfg, None, None, stop_after)


def _train(
    cfg: TrainConfig, state: dict[str, Any] | None, state_path: Path | None, stop_after: int | None
) -> TrainResult:
    device = pick_device(cfg.device)
    dist_info = distributed.setup(device)
    set_threads(cfg.threads, dist_info)
    if cfg.cuda_graphs:
        check_cuda_graphs(device, dist_info.enabled)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    run_dir = Path(cfg.out)
    main = dist_info.is_main
    if main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    data = load_data(cfg, device, dist_info)
    spec = get_spec(cfg.model)
    resolve_recipe(cfg, spec.layers, spec.family)
    if main:
        save_config(cfg, run_dir / "config.json")

    model, model_args = build_model(cfg, len(data.classes), device, dist_info, state is None)
    first_images = functools.cache(lambda: next(data.train.epoch(0))[0])  # read once, if asked
    if state is None and cfg.init is None and hasattr(model, "init_from_data"):
        # Data-dependent init (fastresnet's whitening stem) from the first training batch;
        # under DDP, rank 0's result reaches every rank when DDP broadcasts the weights.
        model.init_from_data(first_images())
    optimizer = build_optimizer(cfg, model)
    schedule = ScheduleState()
    step, best_error = 0, math.inf
    acc = {"loss": 0.0, "wrong": 0, "seen": 0}  # running sums of the current log interval
    # With an EMA, checkpoints keep the average as "model" (what eval, export and
    # fine-tuning load) and the trained weights as "train_model" (what a resume needs).
    if state is not None:
        model.load_state_dict(state.get("train_model", state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        schedule = ScheduleState.from_dict(state["schedule"])
        step, best_error, acc = state["step"], state["best"], state["interval"]
        set_rng_state(state["rng"])
        if main:
            print(f"resuming {run_dir} at step {step} from {state_path}")
    # Made after a resume's weights are in, so an average first asked for on resume
    # starts from them, not from the fresh initialisation.
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    if ema is not None and state is not None and "ema_updates" in state:
        ema.load(state["model"], state["ema_updates"])
    eval_model = ema.model if ema is not None else model

    train_model: nn.Module = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(model)
    use_compile, why = decide_compile(cfg, device, spec.family, spec.layers, dist_info.enabled)
    eager_model = train_model
    if use_compile:
        train_model = torch.compile(train_model)
    # An automatic compile that fails on the first step falls back to eager, once. (If
    # it fails only in backward, that batch moves BN's running statistics twice.)
    may_fall_back = use_compile and cfg.compile is None
    if main and may_fall_back:
        print(f"compile: on ({why})")
    if main and cfg.lr is None and cfg.batch_size != cfg.lr_base_batch:
        print(f"lr: {cfg.peak_lr():g} at batch {cfg.batch_size} (the recipe's {cfg.lr_base:g} "
              f"per {cfg.lr_base_batch} images, scaled linearly; --lr sets it directly)")  # fmt: skip

    total = cfg.scaled(cfg.iterations)
    log_every, eval_every = cfg.scaled(cfg.log_every), cfg.scaled(cfg.eval_every)
    ckpt_every = cfg.scaled(cfg.checkpoint_every)
    per_epoch = len(data.train)
    log = MetricsLog(run_dir / "metrics.jsonl", main, step if state else None, cfg.tensorboard)
    dtype = amp_dtype(cfg.amp, device)
    amp = dtype is not None
    # fp16 needs loss scaling (bf16 has fp32's range); a disabled scaler is a no-op.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if state is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if cfg.cuda_graphs:
        if dtype == torch.float16:
            raise ValueError(
                "cuda_graphs needs --amp bf16 or off on this GPU (fp16 is its default)"
            )
        train_model = graphed(model, first_images(), amp)

    def save(kind: str) -> None:
        if not main:
            return
        payload = {
            "format": ckpt_io.FORMAT,
            "version": ckpt_io.VERSION,
            "model": eval_model.state_dict(),
            "model_args": model_args,
            "classes": data.classes,
            "normalization": data.normalization,
            "image_size": data.image_size,
            "config": cfg.to_dict(),
            "versions": ckpt_io.versions(),
            "step": step,
            "best": best_error,
        }
        folder = run_dir / "checkpoints"
        if kind == "best":
            ckpt_io.atomic_save(payload, folder / ckpt_io.BEST)
            return
        if ema is not None:
            payload.update(train_model=model.state_dict(), ema_updates=ema.updates)
        payload.update(
            optimizer=optimizer.state_dict(),
            scaler=scaler.state_dict(),
            schedule=schedule.to_dict(),
            rng=rng_state(),
            interval=dict(acc),
            epoch=step // per_epoch,
            wall=time.time() - t0 + wall_before,
            batch_in_epoch=step % per_epoch,
        )
        last = folder / ckpt_io.LAST
        if last.exists():  # keep one older good file: resume falls back to it
            os.replace(last, folder / ckpt_io.PREVIOUS)
        ckpt_io.atomic_save(payload, last)

    def run_eval() -> dict[str, float] | None:
        loader = data.val or data.test
        if loader is None:
            return None
        split = "val" if data.val is not None else "test"
        with torch.autocast(device.type, dtype or torch.bfloat16, enabled=amp):
            res = evaluate(eval_model, loader.epoch(0), flip=cfg.eval_flip, shift=cfg.eval_shift)
        record = {"kind": "eval", "split": split, "step": step, "epoch": step / per_epoch}
        return {**record, **res, "wall": time.time() - t0 + wall_before}

    t0 = time.time()
    wall_before = float(state.get("wall", 0.0)) if state else 0.0
    t_interval, seen_interval = time.time(), 0
    bar = None
    if main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True)
    status = "finished"
    batches = iter(())
    epoch = None
    pending = torch.zeros(2, device=device)  # loss sum, wrong count since the last read-back
    pending_from = 0  # first step in `pending` (0: none)

    def forward_backward(net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # (autocast's weight-cast cache cannot live across CUDA graph replays)
        with torch.autocast(device.type, dtype or torch.bfloat16, enabled=amp,
                            cache_enabled=not cfg.cuda_graphs):  # fmt: skip
            logits = net(x)  # (B, K)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        return logits, loss

    def boundary(step: int) -> bool:  # a log, eval, checkpoint, last or stop_after step
        return (
            step % log_every == 0
            or step % eval_every == 0
            or step % ckpt_every == 0
            or step == total
            or (stop_after is not None and step >= stop_after)
        )

    with StopFlag() as stop:
        while step < total:
            if epoch != step // per_epoch:  # first step, resume, or new epoch
                epoch = step // per_epoch
                batches = data.train.epoch(epoch, start=step % per_epoch)
            x, y = next(batches)
            lr = learning_rate(cfg, step, schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # --- the batch's path: forward, loss, backward, update ---
            try:
                logits, loss = forward_backward(train_model, x, y)
            except Exception as e:
                if not may_fall_back:
                    raise
                warnings.warn(
                    f"torch.compile failed on the first step ({one_line(e)}); training eagerly",
                    stacklevel=2,
                )
                train_model = eager_model
                logits, loss = forward_backward(train_model, x, y)
            may_fall_back = False
            scaler.step(optimizer)  # optimizer.step(), skipped if fp16 gradients overflowed
            scaler.update()
            if ema is not None:
                ema.update()
            step += 1

            # Running sums stay on the device; reading them back waits for the device,
            # so on a GPU that happens only at log/eval/checkpoint/stop boundaries.
            wrong_now = (logits.argmax(1) != y).sum().float()
            pending += torch.stack([loss.detach().float() * len(y), wrong_now])
            pending_from = pending_from or step
            acc["seen"] += len(y)
            seen_interval += len(y) * dist_info.world_size
            every_step = sync_every_step(device, cfg, schedule)
            if every_step or boundary(step) or stop.requested:
                loss_sum, wrong = pending.tolist()
                if not math.isfinite(loss_sum):
                    at = f"step {step}" if pending_from == step else f"steps {pending_from}-{step}"
                    raise TrainingDiverged(
                        f"loss became {loss_sum} at {at} "
                        f"(lr {lr:g}); the last good checkpoint is kept in {run_dir / 'checkpoints'}"
                    )
                acc["loss"] += loss_sum
                acc["wrong"] += int(wrong)
                pending.zero_()
                pending_from = 0
                if every_step:
                    observe_train_error(cfg, step, wrong / len(y), schedule)

            if step % log_every == 0 or step == total:
                sums = distributed.all_reduce_mean(
                    torch.tensor([acc["loss"], acc["wrong"], acc["seen"]], dtype=torch.float64),
                    dist_info,
                )
                now = time.time()
                record = {
                    "kind": "train",
                    "step": step,
                    "epoch": step / per_epoch,
                    "loss": (sums[0] / sums[2]).item(),
                    "error": 100.0 * (sums[1] / sums[2]).item(),
                    "lr": lr,
                    "images_per_s": seen_interval / max(now - t_interval, 1e-9),
                    "wall": now - t0 + wall_before,
                }
                log.write(record)
                acc = {"loss": 0.0, "wrong": 0, "seen": 0}
                t_interval, seen_interval = now, 0
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{record['loss']:.3f}",
                        err=f"{record['error']:.1f}%",
                        lr=f"{lr:.3g}",
                        img_s=f"{record['images_per_s']:.0f}",
                    )
            if step % eval_every == 0 or step == total:
                res = run_eval()
                if res is not None:
                    log.write(res)
                    observe_val_error(cfg, step, res["top1_error"], schedule)
                    if res["top1_error"] < best_error:
                        best_error = res["top1_error"]
                        save("best")
            if step % ckpt_every == 0 or step == total:
                save("last")
            if bar is not None:
                bar.update(1)
            if stop_after is not None and step >= stop_after and step < total:
                stop.requested = "stop_after"
            if stop.requested:
                if step % ckpt_every != 0:  # not saved just above
                    save("last")
                status = "stopped" if stop.requested == "stop_after" else "interrupted"
                if main:
                    print(
                        f"\n{stop.requested}: checkpoint saved at step {step}; resume with "
                        f"`reslab train --resume {run_dir}`"
                    )
                break
    if bar is not None:
        bar.close()

    summary = {
        "status": status,
        "signal": stop.requested if status == "interrupted" else None,
        "step": step,
        "iterations": total,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "wall_s": time.time() - t0 + wall_before,
        "best_val_top1_error": best_error if math.isfinite(best_error) else None,
    }
    summary["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        summary["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if status == "finished" and data.test is not None and data.val is not None:
        summary["test"] = evaluate(
            eval_model, data.test.epoch(0), flip=cfg.eval_flip, shift=cfg.eval_shift
        )
    if main:
        last_eval = [
            json.loads(r)
            for r in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"eval"' in r
        ]
        if last_eval:
            summary["final_eval"] = last_eval[-1]
        write_json(run_dir / "summary.json", summary)
    distributed.cleanup()
    return TrainResult(run_dir, status, step, summary, eval_model)


__all__ = ["TrainResult", "TrainingDiverged", "train"]
