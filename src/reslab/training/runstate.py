"""What keeps a run safe and observable: a stop flag set by signals, the RNG state saved
in checkpoints, the metrics log that a resume trims back, and peak memory."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import random
import resource
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..signals import STOP_SIGNALS
from ..storage.files import DiskFull, append_line, atomic_write, disk_full, finite


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
    """A stop signal (signals.STOP_SIGNALS: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1)
    sets a flag; the loop saves a checkpoint at the next step and exits."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in STOP_SIGNALS:
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


# A record is well under 1 KiB; a longer line is not one of ours, and is never read whole.
MAX_LINE = 1 << 20


class MetricsLog:
    """Append-only JSONL. Nothing is written until open(), once the run is built; on a
    resume, open() cuts the log back to the checkpoint's step, so the two agree: records
    after it go, and so does a line torn by a crash or a full disk (with a warning)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None, tensorboard: bool):
        self.path, self.enabled, self.resume_step = path, enabled, resume_step
        self.tensorboard = enabled and tensorboard
        self.tb = None
        self.last: dict[str, dict[str, Any]] = {}  # the latest record of each kind
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard")

    def open(self) -> None:
        if not self.enabled:
            return
        if self.resume_step is not None and self.path.exists():
            self._cut_back(self.resume_step)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))

    def _cut_back(self, step: int) -> None:
        torn: list[int] = []  # line numbers
        later = 0

        def copy(out: BinaryIO) -> None:
            nonlocal later
            with self.path.open("rb") as f:
                for number, line in _lines(f):
                    record = _record(line)
                    if record is None:
                        torn.append(number)
                    elif record["step"] > step:
                        later += 1
                    else:
                        self.last[record.get("kind", "")] = record
                        out.write(line.rstrip(b"\r\n") + b"\n")

        atomic_write(self.path, copy)
        if torn:
            lines = ", ".join(map(str, torn[:5])) + (", ..." if len(torn) > 5 else "")
            warnings.warn(
                f"{self.path}: dropped {len(torn)} unreadable line(s) ({lines}), "
                "torn by a crash or a full disk; the run resumes",
                stacklevel=2,
            )
        if later:
            print(
                f"{self.path}: dropped {later} record(s) written after step {step}, "
                "the checkpoint's"
            )

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.last[record.get("kind", "")] = record
        try:
            append_line(self.path, json_line(record) + "\n")
        except OSError as e:
            full = disk_full(e)
            if full is None:
                raise
            raise DiskFull(
                full,
                f"disk full while writing {self.path}; the checkpoints are "
                "kept: free some space, then resume the run",
            ) from None
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the non-blank lines; a line over MAX_LINE comes as b""."""
    number = 0
    while line := f.readline(MAX_LINE):
        number += 1
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (rest := f.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            line = b""
        elif not line.strip():
            continue
        yield number, line


def _record(line: bytes) -> dict[str, Any] | None:
    """A metrics record (a JSON object with an integer step), or None."""
    try:
        record = json.loads(line)
    except ValueError:  # torn JSON, or bytes that are not UTF-8
        return None
    ok = isinstance(record, dict) and type(record.get("step")) is int
    return record if ok else None
