"""Making the training step faster without changing what it computes: torch.compile
(on where it measured faster) and CUDA graphs."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..errors import one_line
from ..provenance import usable_isa


def check_cuda_graphs(device: torch.device, ddp: bool, amp: torch.dtype | None) -> None:
    """cuda_graphs is refused before anything is written where it cannot run."""
    if device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device; this run is on {device}")
    if ddp:
        raise ValueError("cuda_graphs is not supported with DDP (torchrun) yet")
    if amp == torch.float16:  # fp16's loss scaling is not captured
        raise ValueError("cuda_graphs needs --amp bf16 or off on this GPU (fp16 is its default)")


def graphed(model: nn.Module, sample: Tensor, amp: bool):
    """The model's forward and backward captured as CUDA graphs and replayed each step
    (torch.cuda.make_graphed_callables): a few launches a step instead of hundreds, for
    small nets whose GPU steps are bound by the host. Loss and optimizer stay eager.
    `sample` is a training batch (every one has its shape: drop_last). The capture's
    warm-up runs three forward/backward passes on it, which move batch norm's running
    statistics a little; the weights are not touched."""
    with torch.autocast("cuda", torch.bfloat16, enabled=amp, cache_enabled=False):
        return torch.cuda.make_graphed_callables(model, (sample,))


# compile=None ("auto") turns torch.compile on only where docs/benchmarks.md measured
# it faster: the CIFAR nets up to 110 layers training on a CPU (2-26% a step), in runs
# long enough to repay the first compile (17-36 s for 20-56 layers, 67-82 s for 110).
# ResNet-1202 would compile for far longer; fastresnet and ResNet-18 at 128 px ran
# slower compiled, and GPU results were mixed. On an AVX2-only CPU (AMD EPYC, 2026-12-03)
# it gained nothing: ResNet-20 end to end 1.25x the hand-written loop compiled against
# 1.28x eager, compiled/eager 0.83-1.19x over 4 pairs, for ~800 MiB more and a minute of
# compiling; so "auto" needs AVX-512 (docs/benchmarks.md, 7b).
AUTO_COMPILE_MIN_STEPS = 5_000
AUTO_COMPILE_MAX_LAYERS = 110


def decide_compile(
    cfg: TrainConfig, device: torch.device, family: str, layers: int, ddp: bool
) -> tuple[bool, str]:
    """Whether to torch.compile the training model, and why (for the run's log)."""
    if cfg.compile is not None:
        return cfg.compile, "asked for" if cfg.compile else "turned off"
    steps = cfg.scaled(cfg.iterations)
    reasons = [
        (device.type != "cpu", f"not measured faster on {device.type}"),
        (
            family != "cifar" or layers > AUTO_COMPILE_MAX_LAYERS,
            f"{cfg.model} is not a CIFAR net of at most {AUTO_COMPILE_MAX_LAYERS} layers",
        ),
        (
            steps < AUTO_COMPILE_MIN_STEPS,
            f"{steps} steps do not repay the first compile (< {AUTO_COMPILE_MIN_STEPS})",
        ),
        (
            device.type == "cpu" and "avx512f" not in usable_isa(),
            "not measured faster on a CPU without AVX-512",
        ),
        (cfg.deterministic, "deterministic runs stay eager"),
        (
            ddp or cfg.cuda_graphs or bool(cfg.model_args.get("grad_checkpointing")),
            "not measured with DDP, CUDA graphs or activation checkpointing",
        ),
    ]
    for applies, why in reasons:
        if applies:
            return False, why
    problem = inductor_problem()
    if problem is not None:
        why = f"torch.compile does not work here ({problem})"
        warnings.warn(f"training eagerly, which is slower for {cfg.model}: {why}", stacklevel=2)
        return False, why
    return True, f"{cfg.model} on the CPU for {steps} steps; --no-compile turns it off"


def inductor_problem() -> str | None:
    """None if inductor compiles and runs a tiny function here (it needs a C++ compiler)."""
    try:
        probe = torch.compile(lambda t: torch.relu(t) + 1, fullgraph=True)
        if not torch.equal(probe(torch.zeros(4)), torch.ones(4)):
            return "a test function gave wrong results"
    except Exception as e:  # any backend failure means: stay eager
        return one_line(e, limit=200)
    return None
