"""Will a training run fit in memory? Its peak, estimated before any data is read.

A run killed by the kernel's OOM killer prints `Killed` and nothing else, after its data
has been read; this says so before, in one line, with a batch that fits. The estimate
is a sum of parts, in bytes, for one training process on a CPU (docs/memory.md):

    peak = BASE                                  interpreter, torch, the run's bookkeeping
         + DATA                                  CIFAR: the decoded dataset, twice while split
         + 4 P x (3 + ema)                       weights, gradients, momentum (and an average)
         + max(b x (ACT x A + WORK x W) x e, EVAL)   the micro-batch's activations, or evaluation
         + IN x B x 3 S^2 x 4                    the step's input batch and its augmentation
         + workers x (WORKER + 4 x B x 3 S^2 x 4)   JPEG decoding processes, 4 batches each

P parameters; S the image size; B the images each process takes a step and b = B /
grad_accum_steps a micro-batch; A the elements per image of every leaf module's output
(conv, BN, ReLU...), counted by a forward on the meta device (no memory, no time); with
activation checkpointing A is CKPT x the blocks' inputs plus the largest block's outputs; W the
widest of those outputs (backward's working buffers: the gradient flowing back, BN's and
the convolutions' scratch); e 4 bytes (2 under bf16/fp16 autocast). EVAL is an
evaluation batch's three widest outputs. BASE, ACT, WORK and CKPT were fitted to the peaks
benchmarks/memory_calibration.py measures (docs/memory.md: all within 25%).

The memory a run may use is devices.available(). Only CPU runs are checked (the gate,
plan.py, asks): on a GPU the activations live in its own memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ..config import TrainConfig
from ..datasets import dataset_kind, is_cifar
from ..devices import GIB, MIB, available

BASE = 400 * MIB  # calibrated: python + torch + the run's objects, before any batch
ACT = 0.85  # calibrated: bytes held per byte of leaf outputs (what backward saves)
WORK = 5.0  # calibrated: backward's working buffers, in widest outputs
CKPT = 2.0  # calibrated: a checkpointed block's kept input costs this many (allocator)
IN = 3.0  # the input batch: its float copy, the augmented copy, the loader's uint8
WORKER = 250 * MIB  # a DataLoader worker's own memory (Pillow, its copy of the index)
PREFETCH = 4  # batches each worker prepares ahead (data/loaders.py: prefetch_factor)
CIFAR_IMAGES = 60_000  # CIFAR-10/100 train + test, held decoded in memory


@dataclass(frozen=True)
class Shape:
    """What a model costs per image at one image size, from one meta-device forward."""

    params: int  # P
    stored: int  # A: activation elements kept for backward, per image
    widest: int  # the largest leaf output per image (evaluation's working set)


def model_shape(model: nn.Module, image_size: int) -> Shape:
    """P, A and the widest output of a meta-device `model` at `image_size`."""
    with torch.device("meta"):
        outs: dict[nn.Module, int] = {}
        ins: dict[nn.Module, int] = {}
        hooks = [
            m.register_forward_hook(lambda m, i, o: outs.__setitem__(m, o.numel()))
            for m in model.modules()
            if not list(m.children())
        ]
        stages = getattr(model, "stages", list)()  # fastresnet's are single modules
        blocks = [b for s in stages for b in (s if isinstance(s, nn.Sequential) else [s])]
        hooks += [
            b.register_forward_pre_hook(lambda m, i: ins.__setitem__(m, i[0].numel()))
            for b in blocks
        ]
        with torch.no_grad():  # a plain forward: checkpointed blocks run as usual
            # Two images: at one, training-mode BN refuses a 1x1 map (an ImageNet net
            # below 64 px); every count is halved back to one image below.
            model.train()(torch.empty(2, 3, image_size, image_size))
        for h in hooks:
            h.remove()
    outs = {m: n // 2 for m, n in outs.items()}
    ins = {m: n // 2 for m, n in ins.items()}
    stored = sum(outs.values())
    if getattr(model, "grad_checkpointing", False) and blocks:
        # each block keeps its input; backward recomputes one block's outputs at a time
        inner = [sum(outs.get(m, 0) for m in b.modules()) for b in blocks]
        stored += int(CKPT * sum(ins.values())) - sum(inner) + max(inner)
    params = sum(p.numel() for p in model.parameters())
    return Shape(params, stored, max(outs.values()))


def image_size_of(cfg: TrainConfig) -> int:
    return cfg.image_size or dataset_kind(cfg.dataset).image_size


def estimate(cfg: TrainConfig, shape: Shape, batch: int, accum: int, world_size: int = 1) -> int:
    """Peak bytes of one process training at `batch` (all processes) in `accum` micro-batches."""
    s = image_size_of(cfg)
    per = batch // world_size  # B
    element = 2 if cfg.amp in ("bf16", "fp16") else 4
    image = 3 * s * s * 4  # one float input image, bytes
    cifar = is_cifar(cfg.dataset)
    data = 2 * CIFAR_IMAGES * 3 * s * s if cifar else 0
    state = 4 * shape.params * (3 + (cfg.ema_decay > 0))
    act = (per // accum) * (ACT * shape.stored + WORK * shape.widest) * element
    evaluation = cfg.eval_batch_size * (3 * shape.widest * 4 + image)
    workers = 0 if cifar else cfg.workers
    loader = workers * (WORKER + PREFETCH * per * image)
    return int(BASE + data + state + max(act, evaluation) + IN * per * image + loader)


def check_memory(cfg: TrainConfig, shape: Shape, world_size: int = 1) -> None:
    """Refuse, in one line, a CPU run whose estimated peak exceeds the memory available:
    with the largest batch that fits and the accumulation that keeps the asked batch."""
    limit, where = available()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))  # processes on this machine
    need = local * estimate(cfg, shape, cfg.batch_size, cfg.grad_accum_steps, world_size)
    if need <= limit:
        return
    fits = lambda b, n: local * estimate(cfg, shape, b, n, world_size) <= limit  # noqa: E731
    per = cfg.batch_size // world_size
    largest = max(
        (b for b in range(world_size, cfg.batch_size, world_size) if fits(b, 1)), default=None
    )
    accum = next(
        (
            n
            for n in range(cfg.grad_accum_steps + 1, per + 1)
            if per % n == 0 and fits(cfg.batch_size, n)
        ),
        None,
    )
    n = cfg.grad_accum_steps
    split = f" in {n} micro-batches of {cfg.batch_size // n}" if n > 1 else ""
    what = f"{cfg.model} at batch {cfg.batch_size}{split} ({image_size_of(cfg)} px)"
    advice = []
    if largest is not None:
        advice.append(f"the largest batch that fits is {largest}")
    if accum is not None:
        advice.append(
            f"to keep batch {cfg.batch_size} use --batch-size {cfg.batch_size} "
            f"--grad-accum-steps {accum} (micro-batches of {cfg.batch_size // accum})"
        )
    if not advice:
        advice.append("not even micro-batches of one image fit")
    raise ValueError(
        f"{what} needs about {need / GIB:.1f} GiB of memory and {where} gives "
        f"{limit / GIB:.1f} GiB: {'; '.join(advice)}; --ignore-memory-check trains anyway"
    )


__all__ = ["Shape", "check_memory", "estimate", "image_size_of", "model_shape"]
