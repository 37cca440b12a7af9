"""The signals that stop reslab: a run saves a checkpoint on any of them, start-up exits.

SIGHUP is a dropped SSH session, SIGUSR1 what schedulers (Slurm, Kubernetes hooks) send
before preemption; both would otherwise kill a run without its checkpoint."""

from __future__ import annotations

import signal

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1")
    if hasattr(signal, name)  # Windows has only the first two
)
