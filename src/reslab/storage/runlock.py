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
from .checkpoint import BEST, LAST, PREVIOUS
from .files import remove_stale_temporaries

LOCK = ".lock"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoints", "tensorboard")
CKPT_FILES = (LAST, PREVIOUS, BEST)


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
    """flock on FOLDER/.lock. `stamp=False` takes the lock without writing this pid into
    the file yet (see claim_run_dir: a refused run leaves the file as it was)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.fd: int | None = None
        self.made_lock_file = False  # .lock did not exist before acquire()
        self.old_stamp = b""

    def acquire(self, stamp: bool = True) -> FolderLock:
        check_folder(self.folder)
        self.made_lock_file = not (self.folder / LOCK).exists()
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
        self.fd = fd
        self.old_stamp = os.pread(fd, 32, 0)
        if stamp:
            self.stamp()
        return self

    def stamp(self, text: bytes | None = None) -> None:
        """Write this pid (or `text`) into the lock file: who holds the folder."""
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text if text is not None else f"{os.getpid()}\n".encode(), 0)

    def undo(self) -> None:
        """Leave the lock file as acquire() found it: removed if it made it, else its old
        pid back. Call while holding the lock."""
        if self.made_lock_file:
            (self.folder / LOCK).unlink(missing_ok=True)
        else:
            self.stamp(self.old_stamp)

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


def has_checkpoint(folder: Path) -> bool:
    return any((folder / "checkpoints" / n).is_file() for n in (LAST, PREVIOUS))


def check_resumable(folder: Path) -> None:
    """`--resume FOLDER` names a run that saved a checkpoint; checked before locking, so a
    wrong path creates nothing."""
    check_folder(folder, "--resume")
    if not folder.exists():
        raise FileNotFoundError(f"--resume {folder} does not exist")
    if has_checkpoint(folder):
        return
    if holds_run(folder):
        raise ValueError(f"--resume {folder}: the run saved no checkpoint (it stopped before "
                         "its first); start it again with --overwrite")  # fmt: skip
    raise ValueError(f"--resume {folder} is not a run folder (no checkpoints/{LAST})")


class Claim:
    """A locked run folder. Until commit(), the run has changed nothing in it: a failure
    leaves the folder as it was (the lock file too). commit() is called once the run is
    built, just before its first write: --overwrite's old run is deleted only then."""

    def __init__(self, folder: Path, lock: FolderLock | None, overwrite: bool) -> None:
        self.folder, self.lock, self.overwrite = folder, lock, overwrite
        self.committed = False

    def commit(self) -> None:
        if self.lock is None or self.committed:  # DDP's other ranks write nothing
            return
        self.committed = True
        if self.overwrite:
            for name in RUN_FILES:
                path = self.folder / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        for sub, names in ((self.folder, RUN_FILES), (self.folder / "checkpoints", CKPT_FILES)):
            for tmp in remove_stale_temporaries(sub, names):
                print(f"removed {tmp}: a temporary file left by a killed run")


@contextmanager
def claim_run_dir(folder: str | Path, *, resume: bool, overwrite: bool, main: bool = True
                  ) -> Iterator[Claim]:  # fmt: skip
    """Lock `folder` for a new run (refusing one that holds a run, unless `overwrite`)
    or a resume. A failure before Claim.commit() leaves the folder as it was (one this
    call created is removed); after it, a folder with nothing written is removed."""
    folder = Path(folder)
    if not main:  # DDP: rank 0 holds the lock for the node
        yield Claim(folder, None, overwrite)
        return
    if resume:
        check_resumable(folder)
    check_folder(folder)
    created = not folder.exists()
    lock = FolderLock(folder).acquire(stamp=False)
    claim = Claim(folder, lock, overwrite and not resume)
    try:
        if not resume and holds_run(folder) and not overwrite:
            saved = "" if has_checkpoint(folder) else " that saved no checkpoint"
            go_on = f"continue it with `reslab train --resume {folder}`, " if not saved else ""
            raise RunExists(f"{folder} already holds a run{saved}; {go_on}replace it with "
                            "--overwrite, or choose another --out")  # fmt: skip
        lock.stamp()  # the holder, for a second process's message
        yield claim
    except BaseException:
        if not claim.committed:
            lock.undo()
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
