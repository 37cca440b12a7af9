"""One process per run folder, and a new run never writes over an old one.

A run folder is locked with flock(2) on FOLDER/.lock for as long as a process trains
in it (an experiment folder for as long as `reslab reproduce` runs it). The kernel
drops the lock when the process dies, kill -9 included, so a lock left behind never
blocks a resume; the file only says which pid held it last.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ReslabError

LOCK = ".lock"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoints", "tensorboard")


class FolderInUse(ReslabError):
    """Another live process holds the folder's lock."""


class RunExists(ValueError):
    """A new run was asked for in a folder that holds one."""


def check_folder(folder: Path, what: str = "--out") -> None:
    """A folder to write into must be a folder (or not exist yet), and not empty-named."""
    if str(folder) in ("", "."):
        raise ValueError(f"{what} is empty; give a folder for the run")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder")


class FolderLock:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        check_folder(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(f"cannot write in {self.folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUse(
                f"{self.folder} is in use by another reslab process (pid {holder}); wait for "
                "it to finish, stop it, or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _nothing_written(folder: Path) -> bool:
    """Only the lock, and maybe an empty checkpoints/, in the folder."""
    for entry in folder.iterdir():
        if entry.name == LOCK or (entry.name == "checkpoints" and not any(entry.iterdir())):
            continue
        return False
    return True


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


@contextmanager
def claim_run_dir(folder: str | Path, *, resume: bool, overwrite: bool, main: bool = True
                  ) -> Iterator[None]:  # fmt: skip
    """Lock `folder` for a new run (refusing one that holds a run, unless `overwrite`)
    or a resume. A folder this call created is removed again if the run fails before
    writing anything into it."""
    folder = Path(folder)
    if not main:  # DDP: rank 0 holds the lock for the node
        yield
        return
    check_folder(folder)
    created = not folder.exists()
    lock = FolderLock(folder).acquire()
    try:
        if not resume and holds_run(folder):
            if not overwrite:
                raise RunExists(
                    f"{folder} already holds a run; continue it with `reslab train --resume "
                    f"{folder}`, replace it with --overwrite, or choose another --out"
                )
            for name in RUN_FILES:
                path = folder / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        yield
    except BaseException:
        if created and _nothing_written(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.release()


def fresh_run_dir(base: str | Path) -> Path:
    """`base` if it holds no run, else base-2, base-3, ... (for the default --out)."""
    base = Path(base)
    candidate, n = base, 1
    while candidate.exists() and (holds_run(candidate) or not candidate.is_dir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
