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
inherited free. The trainer evaluates with large buffers mapped on their own again
(`untuned_heap`): an evaluation's batches of 100 are three times a training batch, and
a heap that kept what they freed put 0.9 GiB on a ResNet-50 run's peak (issue 35;
docs/benchmarks.md, section 7f). Elsewhere than Linux with glibc these functions do
nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
from collections.abc import Iterator

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


def _tuned_mmap_max() -> int | None:
    """The mmap_max GLIBC_TUNABLES sets in this process (the CLI's: 0), or None."""
    for item in os.environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = item.partition("=")
        if name == "glibc.malloc.mmap_max" and value.isdigit():
            return int(value)
    return None


@contextlib.contextmanager
def untuned_heap() -> Iterator[None]:
    """Large buffers mapped on their own for the duration, as in a default process, and
    the CLI's tuning back afterwards; the free heap is returned on entry and on exit.
    For an evaluation: its activations (a ResNet-50 batch of 100 at 224 px holds several
    300 MiB tensors at once) are then unmapped when freed, rather than cut from a heap
    that keeps them and their fragments; the next training step faults its own buffers
    in once. Only mmap_max changes: with the CLI's trim threshold set, glibc maps every
    block of 128 KiB or more (the threshold no longer adapts), and mallopt cannot take
    the 16 GiB trim threshold back (an int)."""
    libc, tuned = _glibc(), _tuned_mmap_max()
    if libc is None:
        yield
        return
    libc.malloc_trim(0)
    if tuned is not None:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    try:
        yield
    finally:
        if tuned is not None:
            libc.mallopt(M_MMAP_MAX, tuned)
        libc.malloc_trim(0)


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


__all__ = ["release_free_heap", "reset_worker_heap", "untuned_heap"]
