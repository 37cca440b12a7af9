"""glibc's allocator: tuned in the trainer, back to its defaults in DataLoader workers.

The CLI restarts its heavy commands with GLIBC_TUNABLES set (cli/__init__.py: no mmap,
a 16 GiB trim threshold), so that eager PyTorch keeps its freed activation buffers
instead of faulting them back in every step. A worker forked from such a trainer
inherits that heap: its free pages stay mapped in the worker, shared copy-on-write with
the trainer, so every such page the trainer reuses afterwards is copied, and the
worker's own freed buffers are never returned either. An evaluation's workers, forked
from a trainer whose heap has grown to its training peak, more than doubled a ResNet-50
run's memory that way (issue 27; docs/benchmarks.md, section 7d). `reset_worker_heap`,
each worker's first call, gives the worker glibc's defaults and drops the pages it
inherited free. Elsewhere than Linux with glibc these functions do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's defaults, bytes and count
DEFAULT_MMAP_MAX = 65536


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim, libc.mallopt  # noqa: B018 - both must exist
    except (OSError, AttributeError):
        return None
    return libc


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS now (glibc's malloc_trim(0)); True if any
    were returned."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def reset_worker_heap(worker_id: int = 0) -> None:
    """A DataLoader worker_init_fn: undo the CLI's malloc tuning in this process (a
    worker decodes images; the tuning pays off only in the training step) and unmap the
    free pages inherited from the parent, so they stay the parent's alone."""
    libc = _glibc()
    if libc is None:
        return
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    libc.malloc_trim(0)


__all__ = ["release_free_heap", "reset_worker_heap"]
