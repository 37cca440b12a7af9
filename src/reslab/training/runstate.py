"""What keeps a run safe and observable: a stop flag set by signals, the RNG state saved
in checkpoints, the metrics log that a resume trims back, and peak memory."""

from __future__ import annotations

import ast
import json
import os
import random
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..storage.files import finite


def peak_rss_mb() -> float:
    """Peak resident memory so far of this process and its children (DataLoader
    workers), in MiB. Each live child's own peak (VmHWM) is added to ours and finished
    children count by the largest of them (all getrusage tells); pages shared with a
    child (torch's libraries, copy-on-write data) count in each, so this errs high."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there, and no /proc
        return own / 2**20
    done = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + done + sum(_child_peaks_kb(os.getpid()))) / 1024


def _child_peaks_kb(pid: int) -> list[int]:
    """VmHWM (KiB) of every live descendant of pid, read from /proc."""
    parents: dict[int, int] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:  # "pid (comm) state ppid ...": comm may hold spaces, so split after ')'
            parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile, or unreadable
            continue
    peaks, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, p in parents.items() if p == parent]
        todo += kids
        for c in kids:
            try:
                status = Path(f"/proc/{c}/status").read_text()
                peaks += [
                    int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM")
                ]
            except (OSError, ValueError, IndexError):
                continue
    return peaks


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step and exits."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": list(np.random.get_state()[1].tolist()),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"]))
    random.setstate(ast.literal_eval(state["python"]))


def json_line(record: dict[str, Any]) -> str:
    """Strict JSON: a NaN or infinity (a diverged loss) is written as null."""
    return json.dumps(finite(record), allow_nan=False)


class MetricsLog:
    """Append-only JSONL; on resume, records after the checkpoint's step are dropped."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None, tensorboard: bool):
        self.path, self.enabled = path, enabled
        self.tb = None
        self.last: dict[str, dict[str, Any]] = {}  # the latest record of each kind
        if not enabled:
            return
        if resume_step is not None and path.exists():
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            keep = [(line, json.loads(line)) for line in lines]
            keep = [(line, r) for line, r in keep if r.get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line, _ in keep))
            self.last = {r.get("kind", ""): r for _, r in keep}
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            self.tb = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.last[record.get("kind", "")] = record
        with self.path.open("a") as f:
            f.write(json_line(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])
