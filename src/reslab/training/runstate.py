"""What keeps a run safe and observable: a stop flag set by signals, the RNG state saved
in checkpoints, the metrics log that a resume trims back, and peak memory."""

from __future__ import annotations

import ast
import json
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
    """This process's peak resident memory so far (Linux/macOS), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


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
        if not enabled:
            return
        if resume_step is not None and path.exists():
            keep = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            path.write_text("".join(line + "\n" for line in keep))
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
        with self.path.open("a") as f:
            f.write(json_line(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])
