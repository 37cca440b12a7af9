"""DataLoader workers do not keep the tuned trainer's free heap (issue 27)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reslab.cli import _MALLOC_TUNING
from reslab.data import build_data
from reslab.data.synthetic import make_image_folder
from reslab.data.workers import init_worker
from reslab.glibc_heap import _glibc, reset_worker_heap, untuned_heap

# A "trainer" under the CLI's tunables frees 256 MiB (kept on its heap), then forks a
# "worker" that prints its resident MiB before and after reset_worker_heap().
FORKED_WORKER = textwrap.dedent("""
    import os
    from reslab.glibc_heap import reset_worker_heap
    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    freed = b"x" * (256 << 20)
    del freed
    if os.fork() == 0:
        before = rss_mib()
        reset_worker_heap(0)
        print(before, rss_mib(), flush=True)
        os._exit(0)
    os.wait()
""")


@pytest.mark.skipif(_glibc() is None, reason="glibc's allocator only")
def test_forked_worker_drops_the_free_heap_it_inherited() -> None:
    env = {**os.environ, "GLIBC_TUNABLES": _MALLOC_TUNING}
    proc = subprocess.run(
        [sys.executable, "-c", FORKED_WORKER], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    before, after = map(int, proc.stdout.split())
    assert before > 256 and before - after > 200, (before, after)


# Under the CLI's tunables: 256 MiB freed inside untuned_heap() leaves the process (it
# was mapped on its own), and 256 MiB freed after it stays (the tuning is back).
EVALUATION = textwrap.dedent("""
    import os
    from reslab.glibc_heap import untuned_heap
    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    start = rss_mib()
    with untuned_heap():
        freed = b"x" * (256 << 20)
        del freed
        inside = rss_mib()
    freed = b"x" * (256 << 20)
    del freed
    print(start, inside, rss_mib(), flush=True)
""")


@pytest.mark.skipif(_glibc() is None, reason="glibc's allocator only")
def test_evaluation_heap_is_untuned_then_tuned_again() -> None:
    env = {**os.environ, "GLIBC_TUNABLES": _MALLOC_TUNING}
    proc = subprocess.run(
        [sys.executable, "-c", EVALUATION], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    start, inside, after = map(int, proc.stdout.split())
    assert inside - start < 64 and after - start > 200, (start, inside, after)


def test_untuned_heap_is_harmless_anywhere() -> None:
    with untuned_heap():  # in this process: glibc's defaults kept
        pass


def test_reset_worker_heap_is_harmless_anywhere() -> None:
    reset_worker_heap(3)  # in this process: glibc's defaults kept, free pages returned


def test_only_training_workers_persist(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "t", ["a", "b"], 8, (40, 32))
    data = build_data(
        "imagefolder",
        root,
        batch_size=4,
        val_size=4,
        image_size=32,
        decoded_cache=False,
        cache_dir=tmp_path / "cache",
    )
    train, val = data.train.loader, data.val.loader
    assert train.persistent_workers and not val.persistent_workers
    assert train.worker_init_fn is val.worker_init_fn is init_worker  # calls reset_worker_heap
    assert (train.prefetch_factor, val.prefetch_factor) == (4, 2)
    assert sum(len(y) for _, y in data.val.epoch(0)) == 4  # workers start, run and end
