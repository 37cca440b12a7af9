"""What every DataLoader worker reslab forks does first.

A worker is forked from a process that may hold a run folder's lock and a tuned heap.
If the parent dies at once (Ctrl-C or SIGTERM during start-up ends it with os._exit,
kill -9 ends it outright), a worker must not outlive it holding the lock's open file:
every later `--resume` would be refused with the dead parent's pid."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from ..glibc_heap import reset_worker_heap
from ..storage.runlock import close_inherited_locks

_PR_SET_PDEATHSIG = 1  # prctl(2)


def init_worker(worker_id: int = 0) -> None:
    """A DataLoader worker_init_fn: end with the parent, let go of its locks, and drop
    the heap inherited free (glibc_heap)."""
    die_with_parent(signal.SIGKILL)
    close_inherited_locks()
    reset_worker_heap(worker_id)


def die_with_parent(sig: signal.Signals, parent: int | None = None) -> None:
    """Have the kernel send `sig` to this process when its parent ends (Linux; elsewhere
    DataLoader's own watchdog ends a worker at its next batch). A training job of
    `reproduce --jobs` asks for SIGTERM: it saves its checkpoint and stops. `parent`:
    the pid the process was started by, if known, so that a parent that died before
    this call is noticed too."""
    parent = parent or os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)
