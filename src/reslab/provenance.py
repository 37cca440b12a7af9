"""Where a result came from: the command, the commit, the machine.

Recorded in experiment.json (`reslab reproduce`), in every run's summary.json and in
benchmark rows, so that a number can be traced to what made it. Low level: imports
only torch and the standard library.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

# The instruction-set extensions CPU training and inference speed depend on.
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


# The settings that cap the instruction sets torch's own kernels (ATen), its
# inductor-generated code, oneDNN and MKL use, whatever the CPU has. `limit_isa("avx2")`
# sets them so that one machine can time the AVX2 code paths an AVX2-only CPU would run.
# ONNX Runtime has no such setting: it picks its kernels from the CPU itself.
ISA_LIMITS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    }
}


def limit_isa(isa: str) -> None:
    """Cap this process and its children at `isa`'s code paths (before torch runs a kernel)."""
    if isa not in ISA_LIMITS:
        raise ValueError(f"unknown ISA limit {isa!r}; valid: {', '.join(ISA_LIMITS)}")
    os.environ.update(ISA_LIMITS[isa])


def usable_isa() -> set[str]:
    """The ISA extensions torch's kernels may use here: the CPU's, less those above an
    ISA_LIMITS cap in force (so a capped Xeon answers as an AVX2-only CPU would)."""
    have = set(cpu()["isa"])
    capped = [
        isa
        for isa, limit in ISA_LIMITS.items()
        if any(os.environ.get(k, "").lower() == v.lower() for k, v in limit.items())
    ]
    if capped:  # every cap so far is "avx2": nothing above it
        have &= set(ISA[: ISA.index("avx2") + 1])
    return have


def cpu() -> dict[str, Any]:
    """The CPU's model name, which of ISA it has (from /proc/cpuinfo on Linux) and its cores,
    and the ISA_LIMITS settings in force, if any."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    out = {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "isa": [f for f in ISA if f in flags],
        "cpus": os.cpu_count(),
    }
    names = dict.fromkeys(k for limit in ISA_LIMITS.values() for k in limit)
    limits = {k: os.environ[k] for k in names if os.environ.get(k)}
    if limits:
        out["isa_limit"] = limits
    return out


def commit(where: Path | None = None) -> str:
    """The short git commit of the reslab source in use, or "unknown" (an installed wheel).

    Read from .git's files, not by running git: a child process forked from a large
    training process would count that process's memory again in its peak RSS."""
    for root in (where or Path(__file__)).resolve().parents:
        git = root / ".git"
        if not git.exists():
            continue
        try:
            if git.is_file():  # a worktree or submodule: "gitdir: PATH"
                git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref: "):
                return head[:7]  # detached
            ref = head[5:]
            for base in dict.fromkeys((git, _common_dir(git))):  # a worktree: both
                if (base / ref).is_file():
                    return (base / ref).read_text().strip()[:7]
                packed = base / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + ref):
                            return line.split()[0][:7]
        except (OSError, IndexError):
            pass
        return "unknown"
    return "unknown"


def _common_dir(git: Path) -> Path:
    """A worktree's shared .git folder (where its branches live)."""
    common = git / "commondir"
    return (git / common.read_text().strip()).resolve() if common.is_file() else git


def command(argv: list[str] | None = None) -> str:
    """The command line that started this process, as a user would type it."""
    if argv is not None:
        return "reslab " + " ".join(argv)
    first = Path(sys.argv[0]).name if sys.argv else ""
    if first in ("reslab", "__main__.py"):  # the console script, or `python -m reslab`
        return "reslab " + " ".join(sys.argv[1:])
    return " ".join(["python", *sys.argv])


def provenance(argv: list[str] | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Everything a reader needs to redo a run: command, commit, hardware and versions."""
    c = cpu()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out = {
        "command": command(argv),
        "commit": commit(),
        "hardware": f"{c['cpu']}, {c['cpus']} cores" + (f", {gpu}" if gpu else ""),
        "isa": c["isa"],
        **({"isa_limit": c["isa_limit"]} if "isa_limit" in c else {}),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "malloc": os.environ.get("GLIBC_TUNABLES", "default"),
    }
    if data_dir is not None:
        out["data_dir"] = str(data_dir)
    return out
