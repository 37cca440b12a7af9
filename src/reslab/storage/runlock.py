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
from .files import open_regular, remove_stale_temporaries

LOCK = ".lock"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoints", "tensorboard")
CKPT_FILES = (LAST, PREVIOUS, BEST)


# The descriptors of the locks this process holds: a forked worker closes its copies
# (data/workers.py), so that a worker outliving its parent never keeps a folder locked.
HELD: set[int] = set()


def close_inherited_locks() -> None:
    """In a forked child: close the lock descriptors copied from the parent. The flock
    belongs to the open file, so the parent keeps it; the child no longer does."""
    for fd in list(HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    HELD.clear()


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
        self.made_lock_file = not os.path.lexists(self.folder / LOCK)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot write in {self.folder}: {e.strerror or e}") from None
        fd = open_regular(self.folder / LOCK, os.O_RDWR, 0o644)
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
        HELD.add(fd)
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
            HELD.discard(self.fd)
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
        raise ValueError(
            f"--resume {folder}: the run saved no checkpoint (it stopped before "
            "its first); start it again with --overwrite"
        )
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
            remove_run(self.folder)
        for sub, names in ((self.folder, RUN_FILES), (self.folder / "checkpoints", CKPT_FILES)):
            for tmp in remove_stale_temporaries(sub, names):
                print(f"removed {tmp}: a temporary file left by a killed run")


# What reslab writes in a run folder besides RUN_FILES: `reslab eval`'s default outputs
# and an experiment's extra views. --overwrite removes these and nothing else.
SCORE_FILES = ("eval-*.json", "views.json", "predictions.json")


def remove_run(folder: Path) -> list[Path]:
    """Delete the run reslab wrote in `folder` (its records, scores and checkpoints) and
    nothing else: a file a user put there, under checkpoints/ too, is kept and named."""
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        (folder / name).unlink(missing_ok=True)
    for pattern in SCORE_FILES:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
    tensorboard = folder / "tensorboard"
    if tensorboard.is_dir() and not tensorboard.is_symlink():
        shutil.rmtree(tensorboard)
    checkpoints = folder / "checkpoints"
    kept: list[Path] = []
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        for name in CKPT_FILES:
            (checkpoints / name).unlink(missing_ok=True)
        remove_stale_temporaries(checkpoints, CKPT_FILES)
        kept = sorted(checkpoints.iterdir())
        if not kept:
            checkpoints.rmdir()
    if kept:
        names = ", ".join(p.name for p in kept[:5]) + (", ..." if len(kept) > 5 else "")
        print(
            f"--overwrite kept {len(kept)} file(s) in {checkpoints} that reslab did not "
            f"write: {names}"
        )
    return kept


def check_own_folders(folder: Path) -> None:
    """The run's own sub-folders are real folders: checkpoints written through a link
    would land outside the run folder."""
    for name in ("checkpoints", "tensorboard"):
        if (folder / name).is_symlink():
            raise ValueError(
                f"{folder / name} is a symbolic link; reslab does not write "
                "through links: remove it and run again"
            )


@contextmanager
def claim_run_dir(
    folder: str | Path, *, resume: bool, overwrite: bool, main: bool = True
) -> Iterator[Claim]:
    """Lock `folder` for a new run (refusing one that holds a run, unless `overwrite`)
    or a resume. A failure before Claim.commit(), or a new run's failure before its
    first checkpoint, leaves the folder as it was (one this call created is removed)."""
    folder = Path(folder)
    if not main:  # DDP: rank 0 holds the lock for the node
        yield Claim(folder, None, overwrite)
        return
    if resume:
        check_resumable(folder)
    check_folder(folder)
    if folder.is_dir():
        check_own_folders(folder)
    created = not folder.exists()
    lock = FolderLock(folder).acquire(stamp=False)
    claim = Claim(folder, lock, overwrite and not resume)
    try:
        if not resume and holds_run(folder) and not overwrite:
            saved = "" if has_checkpoint(folder) else " that saved no checkpoint"
            go_on = f"continue it with `reslab train --resume {folder}`, " if not saved else ""
            raise RunExists(
                f"{folder} already holds a run{saved}; {go_on}replace it with "
                "--overwrite, or choose another --out"
            )
        lock.stamp()  # the holder, for a second process's message
        yield claim
    except BaseException:
        if claim.committed and not resume and not has_checkpoint(folder):
            # Failed before its first checkpoint: nothing to resume, so what it wrote
            # goes and the folder is as it was found (a rerun needs no --overwrite).
            remove_run(folder)
            claim.committed = False
        if not claim.committed:
            lock.undo()
        if created and _nothing_written(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.release()


def fresh_run_dir(base: str | Path, taken: frozenset[Path] = frozenset()) -> Path:
    """`base` if it holds no run, else base-2, base-3, ... (for the default --out);
    `taken`: folders another process claimed first (two runs started at once)."""
    base = Path(base)
    candidate, n = base, 1
    while candidate in taken or (
        candidate.exists() and (holds_run(candidate) or not candidate.is_dir())
    ):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
