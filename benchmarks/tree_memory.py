"""Peak memory of a process tree, sampled from /proc (Linux): RSS and PSS.

RSS counts a page in every process that maps it, so a trainer and its forked DataLoader
workers count their shared (copy-on-write) pages two or three times; PSS splits each
page among the processes sharing it, so the tree's PSS counts it once: what the tree
really costs the machine.

    python benchmarks/tree_memory.py -- CMD ...   # runs CMD, prints one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

FIELDS = {
    "Rss": "rss",
    "Pss": "pss",
    "Pss_Anon": "pss_anon",
    "Pss_File": "pss_file",
    "Pss_Shmem": "pss_shmem",
}


def descendants(root: int) -> list[int]:
    """root and every process below it (one pass over /proc: parent of each)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:  # the command may contain ") ": the parent is the 2nd field after the last ")"
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def rollup(pid: int) -> dict[str, int]:
    """One process's smaps_rollup figures, bytes ({} once it has exited)."""
    res: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in FIELDS:
                res[FIELDS[key]] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return res


class TreePeak:
    """Samples the tree under `pid` every `every` s in a thread until stop(); keeps the
    sample with the largest total PSS (and the largest RSS on its own)."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every = pid, every
        self.peak: dict[str, float] = {"pss": 0, "rss": 0}
        self.peak_rss = 0
        self.procs_at_peak: list[dict[str, int]] = []  # the root first
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            procs = [r for r in map(rollup, descendants(self.pid)) if r]
            total = {k: sum(r.get(k, 0) for r in procs) for k in FIELDS.values()}
            self.peak_rss = max(self.peak_rss, total["rss"])
            if total["pss"] > self.peak["pss"]:
                self.peak, self.procs_at_peak = total, procs
            self._done.wait(self.every)

    def stop(self) -> dict[str, float]:
        """GiB: peak tree PSS with its parts at that moment, and the peak tree RSS."""
        self._done.set()
        self._thread.join()
        gib = {f"peak_{k}_gib": v / 2**30 for k, v in self.peak.items()}
        gib["peak_rss_gib"] = self.peak_rss / 2**30
        each = [round(r.get("pss", 0) / 2**30, 3) for r in self.procs_at_peak]
        return {**gib, "pss_gib_each_at_peak": each}


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float | None = None
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run cmd to its end under a TreePeak: (its completed process, the peaks)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreePeak(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        peaks = sampler.stop()
    peaks["wall_s"] = time.perf_counter() - t
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peaks


if __name__ == "__main__":
    done, peaks = run_measured(sys.argv[sys.argv.index("--") + 1 :], dict(os.environ))
    sys.stderr.write(done.stderr[-2000:])
    print(json.dumps({"rc": done.returncode, **peaks}))
