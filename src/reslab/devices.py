"""Where a process computes: the device, its CPU threads, and mixed precision."""

from __future__ import annotations

import os

import torch

from .distributed import DistInfo
from .provenance import cpu


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
    check_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def check_device(device: torch.device) -> None:
    """A device this machine has, or one line saying it lacks it (before any data is read)."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")  # fmt: skip
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps and mps.is_available()):
        raise ValueError(f"device {str(device)!r} asked for, but MPS (Apple GPUs) is not "
                         "available here")  # fmt: skip


def set_threads(threads: int | None, dist_info: DistInfo) -> None:
    """All cores by default, shared evenly between the processes of one node."""
    if threads is None:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", dist_info.world_size))
        threads = max(1, (os.cpu_count() or 1) // max(1, local))
    torch.set_num_threads(threads)


def amp_dtype(mode: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of --amp (None: off). Unset, it is bf16 on CUDA GPUs that run it
    fast (Ampere and newer), fp16 on older GPUs, and off on CPUs: fp32, the paper's and
    every CPU's numerics (bf16 is 1.5-2x faster on CPUs with AMX, see `amp_hint`, and
    slower on those without)."""
    if mode is None:
        if device.type != "cuda":
            return None
        try:  # native bf16 only: emulated bf16 on older GPUs is slower than fp16
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no emulation flag and reports native support
            native = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if native else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]


def amp_hint(mode: str | None, device: torch.device) -> str | None:
    """A line for a CPU run left in fp32 on a CPU with AMX (Sapphire Rapids and later
    Xeons), where bf16 autocast trained the CIFAR ResNets 1.5-2x faster than fp32
    (docs/benchmarks.md); None elsewhere."""
    c = cpu()
    if mode is not None or device.type != "cpu" or "amx_bf16" not in c["isa"] or "isa_limit" in c:
        return None  # (an ISA limit keeps oneDNN off the AMX units)
    return "amp: off (fp32); this CPU has AMX, where --amp bf16 trains 1.5-2x faster (docs/benchmarks.md, 1b)"
