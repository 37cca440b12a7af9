"""Where a result came from: the command, the commit, the machine.

Recorded in experiment.json (`reslab reproduce`), in every run's summary.json and in
benchmark rows, so that a number can be traced to what made it. Low level: imports
only torch and the standard library.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

# The instruction-set extensions CPU training and inference speed depend on.
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict[str, Any]:
    """The CPU's model name, which of ISA it has (from /proc/cpuinfo on Linux) and its cores."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "isa": [f for f in ISA if f in flags], "cpus": os.cpu_count()}  # fmt: skip


def commit() -> str:
    """The short git commit of the reslab source in use, or "unknown" (an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).parent, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        out = ""
    return out or "unknown"


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
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "malloc": os.environ.get("GLIBC_TUNABLES", "default"),
    }
    if data_dir is not None:
        out["data_dir"] = str(data_dir)
    return out
