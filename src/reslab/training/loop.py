"""train(config): the path of a batch, in order, and everything that keeps a run safe.

RUN/config.json          the resolved config
RUN/metrics.jsonl        one JSON record per log interval / evaluation
RUN/checkpoints/         last.pt (+ previous.pt) to resume, best.pt by validation error
RUN/summary.json         final errors, wall time, images/s

train() asks plan() (plan.py) whether the run may start and claims the folder;
prepare_run() (prepare.py) builds everything a step needs; fit() walks the batches: train_step(), then what a step's
boundary asks for (a log record, an evaluation, a checkpoint); finish() writes the
summary.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed
from ..config import TrainConfig, merge_config
from ..errors import ReslabError, one_line
from ..evaluation import NonFiniteScores, evaluate
from ..storage import checkpoint as ckpt_io
from ..storage.files import write_json
from ..storage.runlock import Claim, claim_run_dir
from .checkpointing import NonFiniteWeights, save
from .plan import Plan, plan, plan_resume
from .prepare import Run, prepare_run, start
from .runstate import StopFlag, peak_rss_mb
from .schedule import learning_rate, observe_train_error, observe_val_error

StepHook = Callable[[int], None]  # called with the step number after every step


class TrainingDiverged(ReslabError, RuntimeError):
    """The loss, the weights or the network's outputs became NaN or infinite. The run
    stops with summary.json's status "diverged"; the last finite checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "finished" | "stopped" (stop_after) | "interrupted" (signal)
    step: int
    summary: dict[str, Any]
    model: nn.Module


def train(
    config: TrainConfig | dict[str, Any] | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    overwrite: bool = False,
    on_step: StepHook | None = None,
    on_start: Callable[[Path], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a network as `config` says (or resume the run in folder `resume`).

    The whole run is checked once (training/plan.py) before any folder or data is
    touched. The run folder is locked while training; a new run refuses a folder that
    holds a run unless `overwrite` (which deletes that run's files first).
    `on_start(run_dir)` is called once the run may start; `on_step(step)` after every
    step (progress callbacks, tests that stop a run at a known step).

    >>> result = reslab.train(make_config("cifar-paper", model="resnet20", data_dir="~/data"))
    """
    if stop_after is not None and (type(stop_after) is not int or stop_after < 1):
        raise ValueError(f"stop_after must be a step >= 1, got {stop_after!r}")
    main = distributed.from_env().is_main
    if resume is not None:
        # Nothing in the folder changes until start(): a refused resume leaves it as it was.
        with claim_run_dir(resume, resume=True, overwrite=False, main=main) as claim:
            state, state_path = ckpt_io.load_resumable(resume)
            the_plan = plan_resume(resume, state, state_path, overrides)
            return _run(the_plan, claim, state, state_path, stop_after, on_step, on_start)
    if isinstance(config, dict):
        config = merge_config(config.get("recipe", "cifar-paper"), config)
    cfg = config or merge_config("cifar-paper", {})
    if overrides:
        cfg = merge_config(cfg.recipe, {**cfg.to_dict(), **overrides})
    the_plan = plan(cfg)
    with claim_run_dir(cfg.out, resume=False, overwrite=overwrite, main=main) as claim:
        return _run(the_plan, claim, None, None, stop_after, on_step, on_start)


def _run(
    the_plan: Plan,
    claim: Claim,
    state: dict[str, Any] | None,
    state_path: Path | None,
    stop_after: int | None,
    on_step: StepHook | None,
    on_start: Callable[[Path], None] | None,
) -> TrainResult:
    run = prepare_run(the_plan, state, state_path)
    start(run, claim)  # --overwrite's old run is deleted only now, once all is built
    if on_start is not None:
        on_start(run.run_dir)
    return fit(run, stop_after, on_step)


def train_step(run: Run, x: Tensor, y: Tensor, lr: float) -> tuple[Tensor, Tensor]:
    """One SGD step on a batch: forward and backward over its micro-batches, one update.
    Returns the batch's (B, K) logits and its mean loss."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    try:
        logits, loss = accumulate(run, run.train_model, x, y)
    except Exception as e:
        if not run.may_fall_back:
            raise
        warnings.warn(
            f"torch.compile failed on the first step ({one_line(e)}); training eagerly",
            stacklevel=2,
        )
        run.train_model = run.eager_model
        logits, loss = accumulate(run, run.train_model, x, y)
    run.may_fall_back = False
    run.scaler.step(run.optimizer)  # optimizer.step(), skipped if fp16 gradients overflowed
    run.scaler.update()
    if run.ema is not None:
        run.ema.update()  # once per optimiser step, not per micro-batch
    return logits, loss


def accumulate(run: Run, net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of the batch's mean loss, summed over cfg.grad_accum_steps equal
    micro-batches (each loss divided by their number). Under DDP only the last
    micro-batch's backward all-reduces."""
    run.optimizer.zero_grad(set_to_none=True)
    n = run.cfg.grad_accum_steps
    logits, losses = [], []
    for i, (xi, yi) in enumerate(zip(x.chunk(n), y.chunk(n))):
        with distributed.no_sync(run.eager_model, skip=i < n - 1):
            out, loss = forward_backward(run, net, xi, yi, 1 / n)
        logits.append(out.detach())
        losses.append(loss.detach())
    if n == 1:
        return logits[0], losses[0]
    return torch.cat(logits), torch.stack(losses).mean()


def forward_backward(
    run: Run, net: nn.Module, x: Tensor, y: Tensor, weight: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Forward, loss, and backward of `weight` x loss into the gradients."""
    # (autocast's weight-cast cache cannot live across CUDA graph replays)
    with torch.autocast(
        run.device.type,
        run.amp_dtype or torch.bfloat16,
        enabled=run.amp_dtype is not None,
        cache_enabled=not run.cfg.cuda_graphs,
    ):
        logits = net(x)  # (b, K)
        loss = F.cross_entropy(logits, y, label_smoothing=run.cfg.label_smoothing)
    run.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
    return logits, loss


def fit(run: Run, stop_after: int | None, on_step: StepHook | None = None) -> TrainResult:
    """The loop: a batch's path, then what this step's boundary asks for."""
    cfg = run.cfg
    total = cfg.scaled(cfg.iterations)
    every = {k: cfg.scaled(getattr(cfg, f"{k}_every")) for k in ("log", "eval", "checkpoint")}
    meter = Meter(run)
    bar = progress_bar(run, total)
    batches, epoch, status = iter(()), None, "finished"
    run.t0 = time.time()
    with StopFlag() as stop, diverged_ends(run, total):
        while run.step < total:
            if epoch != run.step // run.per_epoch:  # first step, resume, or new epoch
                epoch = run.step // run.per_epoch
                batches = run.data.train.epoch(epoch, start=run.step % run.per_epoch)
            x, y = next(batches)
            lr = learning_rate(cfg, run.step, run.schedule)
            logits, loss = train_step(run, x, y, lr)
            run.step += 1
            step, last = run.step, run.step == total
            stopping = stop_after is not None and stop_after <= step < total
            boundary = last or stopping or any(step % n == 0 for n in every.values())
            meter.add(logits, loss, y, lr, read_back=boundary or bool(stop.requested))
            if step % every["log"] == 0 or last:
                meter.log(lr, bar)
            if step % every["eval"] == 0 or last:
                evaluate_and_keep_best(run)
            if step % every["checkpoint"] == 0 or last:
                save(run, "last")
            if bar is not None:
                bar.update(1)
            if on_step is not None:
                on_step(step)
            if stopping:
                stop.requested = "stop_after"
            if stop.requested:
                if step % every["checkpoint"] != 0:  # not saved just above
                    save(run, "last")
                status = "stopped" if stop.requested == "stop_after" else "interrupted"
                if run.main:
                    print(
                        f"\n{stop.requested}: checkpoint saved at step {step}; resume with "
                        f"`reslab train --resume {run.run_dir}`"
                    )
                break
    if bar is not None:
        bar.close()
    return finish(run, status, stop.requested, total)


@contextmanager
def diverged_ends(run: Run, total: int) -> Iterator[None]:
    """A run that diverges ends with summary.json's status "diverged" and one line naming
    the step, never "finished"; checkpoints written before it (finite ones) are kept."""
    try:
        yield
    except (TrainingDiverged, NonFiniteWeights) as e:
        finish(run, "diverged", None, total)
        last = run.saved_step
        kept = (
            f"the last finite checkpoint (step {last}) is kept"
            if last is not None
            else "no checkpoint was saved before it"
        )
        raise TrainingDiverged(
            f"diverged at step {run.step}: {e}; {kept} in {run.run_dir / 'checkpoints'}"
        ) from None


def sync_every_step(run: Run) -> bool:
    """Read the loss back after every step? Free on a CPU; on a GPU it would stall the
    host every step, so only while the paper's ResNet-110 warm-up waits for the
    training error to fall below its threshold."""
    warming = run.cfg.warmup_lr is not None and run.schedule.warmup_done_at is None
    return run.device.type == "cpu" or warming


class Meter:
    """Running sums of a log interval. They stay on the device; reading them back waits
    for it, so on a GPU that happens only at log/eval/checkpoint/stop boundaries."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.pending = torch.zeros(2, device=run.device)  # loss sum, wrong count
        self.pending_from = 0  # first step in `pending` (0: none)
        self.t_interval, self.seen_interval = time.time(), 0

    def add(self, logits: Tensor, loss: Tensor, y: Tensor, lr: float, read_back: bool) -> None:
        run = self.run
        wrong_now = (logits.argmax(1) != y).sum().float()
        self.pending += torch.stack([loss.detach().float() * len(y), wrong_now])
        self.pending_from = self.pending_from or run.step
        run.acc["seen"] += len(y)
        self.seen_interval += len(y) * run.dist_info.world_size
        every_step = sync_every_step(run)
        if not (every_step or read_back):
            return
        loss_sum, wrong = self.pending.tolist()
        if not math.isfinite(loss_sum):
            first, step = self.pending_from, run.step
            at = f"step {step}" if first == step else f"steps {first}-{step}"
            raise TrainingDiverged(f"the loss became {loss_sum} at {at} (lr {lr:g})")
        run.acc["loss"] += loss_sum
        run.acc["wrong"] += int(wrong)
        self.pending.zero_()
        self.pending_from = 0
        if every_step:
            observe_train_error(run.cfg, run.step, wrong / len(y), run.schedule)

    def log(self, lr: float, bar: Any) -> None:
        """One training record: mean loss and error over the interval, all processes."""
        run, acc = self.run, self.run.acc
        sums = distributed.all_reduce_mean(
            torch.tensor([acc["loss"], acc["wrong"], acc["seen"]], dtype=torch.float64),
            run.dist_info,
        )
        now = time.time()
        record = {
            "kind": "train",
            "step": run.step,
            "epoch": run.step / run.per_epoch,
            "loss": (sums[0] / sums[2]).item(),
            "error": 100.0 * (sums[1] / sums[2]).item(),
            "lr": lr,
            "images_per_s": self.seen_interval / max(now - self.t_interval, 1e-9),
            "wall": run.wall(),
        }
        run.log.write(record)
        run.acc = {"loss": 0.0, "wrong": 0, "seen": 0}
        self.t_interval, self.seen_interval = now, 0
        if bar is not None:
            bar.set_postfix(
                loss=f"{record['loss']:.3f}",
                err=f"{record['error']:.1f}%",
                lr=f"{lr:.3g}",
                img_s=f"{record['images_per_s']:.0f}",
            )


def progress_bar(run: Run, total: int) -> Any:
    if not (run.main and run.cfg.progress):
        return None
    from tqdm import tqdm  # optional: only for the bar

    return tqdm(total=total, initial=run.step, unit="step", dynamic_ncols=True)


def run_evaluation(run: Run, split: str) -> dict[str, Any] | None:
    """Top-1/top-5 error of the evaluated weights on a split, under the training's
    autocast; the same call in the loop and at the end."""
    loader = run.data.val if split == "val" else run.data.test
    if loader is None:
        return None
    cfg = run.cfg
    dtype = run.amp_dtype
    # The tuned heap (glibc_heap.py) holds the training step's freed activations: it is
    # handed back before the evaluation's workers fork, and the evaluation's own (batches
    # of 100, issue 35) are unmapped when freed; the next step faults its buffers in once.
    autocast = torch.autocast(run.device.type, dtype or torch.bfloat16, enabled=dtype is not None)
    with autocast:  # evaluate() maps its large buffers on their own (untuned_heap)
        return evaluate(run.eval_model, loader.epoch(0), flip=cfg.eval_flip, shift=cfg.eval_shift)


def evaluate_and_keep_best(run: Run) -> None:
    """Evaluate on the validation split (the test split if there is none), log the
    record, and save best.pt when the error is the lowest so far."""
    split = "val" if run.data.val is not None else "test"
    try:
        res = run_evaluation(run, split)
    except NonFiniteScores as e:  # argmax over NaN is no error rate
        raise TrainingDiverged(f"on the {split} split, {e}") from None
    if res is None:
        return
    record = {
        "kind": "eval",
        "split": split,
        "step": run.step,
        "epoch": run.step / run.per_epoch,
        **res,
        "wall": run.wall(),
    }
    run.log.write(record)
    observe_val_error(run.cfg, run.step, res["top1_error"], run.schedule)
    if res["top1_error"] < run.best_error:
        run.best_error = res["top1_error"]
        save(run, "best")


def finish(run: Run, status: str, signal: str | None, total: int) -> TrainResult:
    """summary.json: how the run ended, its errors, time and memory."""
    cfg = run.cfg
    summary = {
        "status": status,
        "signal": signal if status == "interrupted" else None,
        "step": run.step,
        "iterations": total,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "wall_s": run.wall(),
        "best_val_top1_error": run.best_error if math.isfinite(run.best_error) else None,
        "peak_rss_mb": peak_rss_mb(),
        "decoded_cache": getattr(run.data, "decoded_cache", None),  # which input path trained
        "provenance": {**run.provenance, "data_dir": cfg.data_dir},  # this process's
    }
    if run.device.type == "cuda":
        summary["peak_cuda_mb"] = torch.cuda.max_memory_allocated(run.device) / 2**20
    if status == "finished" and run.data.test is not None and run.data.val is not None:
        summary["test"] = run_evaluation(run, "test")
    if run.main:
        if "eval" in run.log.last:
            summary["final_eval"] = run.log.last["eval"]
        write_json(run.run_dir / "summary.json", summary)
    distributed.cleanup()
    return TrainResult(run.run_dir, status, run.step, summary, run.eval_model)


__all__ = ["TrainResult", "TrainingDiverged", "fit", "train", "train_step"]
