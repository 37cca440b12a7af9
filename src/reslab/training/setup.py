"""What a run needs before its first step: device, threads, data, model, optimizer,
and whether to compile it or capture it as CUDA graphs."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..data import Data, build_data
from ..distributed import DistInfo, convert_sync_batchnorm
from ..errors import one_line
from ..models import create_model


def pick_device(name: str) -> torch.device:
    """ "auto": CUDA, else Apple MPS, else CPU. Under torchrun, CUDA uses LOCAL_RANK."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def set_threads(threads: int | None, dist_info: DistInfo) -> None:
    """All cores by default, shared evenly between the processes of one node."""
    if threads is None:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", dist_info.world_size))
        threads = max(1, (os.cpu_count() or 1) // max(1, local))
    torch.set_num_threads(threads)


def check_cuda_graphs(device: torch.device, ddp: bool) -> None:
    """cuda_graphs is refused before anything is written where it cannot run."""
    if device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device; this run is on {device}")
    if ddp:
        raise ValueError("cuda_graphs is not supported with DDP (torchrun) yet")


def amp_dtype(mode: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of --amp (None: off). Unset, it is bf16 on CUDA GPUs that run it
    fast (Ampere and newer), fp16 on older GPUs, off on CPUs (bf16 measured slower there)."""
    if mode is None:
        if device.type != "cuda":
            return None
        try:  # native bf16 only: emulated bf16 on older GPUs is slower than fp16
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no emulation flag and reports native support
            native = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if native else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]


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
# slower compiled, and GPU results were mixed.
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
        (family != "cifar" or layers > AUTO_COMPILE_MAX_LAYERS,
         f"{cfg.model} is not a CIFAR net of at most {AUTO_COMPILE_MAX_LAYERS} layers"),
        (steps < AUTO_COMPILE_MIN_STEPS,
         f"{steps} steps do not repay the first compile (< {AUTO_COMPILE_MIN_STEPS})"),
        (cfg.deterministic, "deterministic runs stay eager"),
        (ddp or cfg.cuda_graphs or bool(cfg.model_args.get("grad_checkpointing")),
         "not measured with DDP, CUDA graphs or activation checkpointing"),
    ]  # fmt: skip
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


# TrainConfig fields that build_data takes under the same name.
DATA_FIELDS = (
    "batch_size", "eval_batch_size", "val_size", "split_seed", "seed", "image_size",
    "normalize", "augment", "workers", "limit", "download", "strict", "crop_pad", "cutout",
    "alternate_flip",
)  # fmt: skip


def load_data(cfg: TrainConfig, device: torch.device, dist_info: DistInfo) -> Data:
    return build_data(
        cfg.dataset,
        os.path.expanduser(cfg.data_dir),
        device=device,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        channels_last=cfg.channels_last if cfg.channels_last is not None else True,
        **{name: getattr(cfg, name) for name in DATA_FIELDS},
    )


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


def init_from(model: nn.Module, source: str) -> None:
    """Copy every weight whose name and shape match, and say what was copied and what not.
    The classifier is left new when the class counts differ (fine-tuning); any other
    tensor of the model that the file lacks is an error."""
    state = read_state_dict(source)
    own = model.state_dict()
    name = model.build_args["name"]
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in fitting and not k.startswith("fc.")]
    if missing:
        raise ValueError(
            f"{source}: weights do not fit {name}: {len(missing)} of its {len(own)} tensors "
            f"are missing from the file or of another shape, e.g. {', '.join(missing[:4])}"
        )
    model.load_state_dict(fitting, strict=False)
    unused = [k for k in state if k not in fitting and not k.startswith("fc.")]
    head = "kept" if all(k in fitting for k in own if k.startswith("fc.")) else "new"
    print(f"init: {len(fitting)} of {name}'s {len(own)} tensors from {source}; classifier {head}")
    if unused:
        warnings.warn(
            f"{source}: {len(unused)} tensors of the file are not in {name} and were skipped "
            f"(e.g. {', '.join(unused[:3])}): the file is a larger or different network",
            stacklevel=2,
        )


def read_state_dict(source: str) -> dict[str, torch.Tensor]:
    """A state dict from a run folder, a reslab checkpoint or a plain/wrapped state dict."""
    from ..storage.checkpoint import resolve
    from ..weights import read_weights

    return read_weights(resolve(source)).state_dict


def freeze(model: nn.Module, stages: int) -> None:
    """Freeze the stem and the first `stages` stages (weights and BN statistics)."""
    stem = [getattr(model, n) for n in ("conv1", "bn1", "whiten") if hasattr(model, n)]
    parts: list[nn.Module] = [*stem, *model.stages()[:stages]]
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)
        for m in part.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
                m.train = lambda mode=True, m=m: m  # keep frozen stats through model.train()


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
