"""Where a process computes: the device, its CPU threads, mixed precision, and the
machine's memory.

The memory a process may use is MemAvailable (/proc/meminfo, plus what this process
holds already) or the cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) where
that is lower; $RESLAB_MEMORY_LIMIT (bytes, or 512M, 8G...) replaces both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .distributed import DistInfo, local_rank
from .provenance import cpu

GIB = 2**30
MIB = 2**20
LIMIT_ENV = "RESLAB_MEMORY_LIMIT"


def pick_device(name: str) -> torch.device:
    """ "auto": CUDA, else Apple MPS, else CPU. Under torchrun, CUDA uses LOCAL_RANK."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and (rank := local_rank()) is not None:
        name = f"cuda:{rank}"
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
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps and mps.is_available()):
        raise ValueError(
            f"device {str(device)!r} asked for, but MPS (Apple GPUs) is not available here"
        )


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


def available() -> tuple[int, str]:
    """(bytes this run may use, where that figure comes from)."""
    given = os.environ.get(LIMIT_ENV)
    if given:
        return parse_bytes(given), f"${LIMIT_ENV}"
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():  # not Linux: nothing to compare with
        return 2**62, "no /proc/meminfo"
    kb = dict(re.findall(r"^(\w+):\s+(\d+)", meminfo.read_text(), re.M))
    own = _own_rss()
    best, where = int(kb["MemAvailable"]) * 1024 + own, "MemAvailable"
    for limit in _cgroup_limits():
        if limit < best:
            best, where = limit, "the cgroup's memory limit"
    return best, where


def parse_bytes(text: str) -> int:
    """'12884901888', '12G', '512M', '1.5T' (powers of 1024) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not m or float(m[1]) <= 0:
        raise ValueError(f"${LIMIT_ENV}={text!r} is not a size: give bytes, or e.g. 512M, 8G")
    return int(float(m[1]) * 1024 ** " KMGT".index(m[2].upper() or " "))


def _own_rss() -> int:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M)[1]) * 1024  # type: ignore[index]
    except (OSError, TypeError):
        return 0


def _cgroup_limits() -> list[int]:
    """Memory limits of this process's cgroup (v2 and v1), where a container sets them."""
    root = Path("/sys/fs/cgroup")
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates = [root / "memory.max", root / path.lstrip("/") / "memory.max"]
        elif "memory" in controllers.split(","):
            base = root / "memory"
            candidates = [
                base / "memory.limit_in_bytes",
                base / path.lstrip("/") / "memory.limit_in_bytes",
            ]
        else:
            continue
        for f in candidates:
            try:
                text = f.read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < 2**60:  # "max" / v1's 2^63: no limit
                found.append(int(text))
    return found
