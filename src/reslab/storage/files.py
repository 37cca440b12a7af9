"""Writing files so that nothing a user made is lost.

Every file reslab writes (checkpoints, config.json, summary.json, metrics, eval
results, reports, exports) goes through `atomic_write`: a temporary file in the same
folder, fsync, then a rename over the target. A crash leaves the old file or the new
one, never half of one; a full disk leaves the old one. The rename never replaces
anything but a regular file: a device node such as /dev/null, a folder or a link
given as an output is refused.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ReslabError


class DiskFull(ReslabError, OSError):
    """A write failed for want of space (or quota); the file it would replace is kept."""

    def __str__(self) -> str:  # the message alone, without "[Errno 28]"
        return self.strerror or super().__str__()


def check_target(path: str | Path) -> Path:
    """Refuse to write over anything but a regular file: a device node such as /dev/null,
    a folder, a FIFO or a socket is never replaced by an atomic rename."""
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError("an empty output path was given")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(mode):
        raise ValueError(f"{path} is a symbolic link; give the file it points to, or a new path")
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); not writing")
    return path


def refuse_existing(path: str | Path, overwrite: bool, inputs: tuple[str | None, ...] = ()) -> Path:
    """A file the user named as output is never replaced unless they say so, and never
    when it is one of the command's own inputs (`inputs`: files, or run folders whose
    checkpoints and records the command reads), --overwrite or not."""
    path = check_target(path)
    for source in inputs:  # a path, None, or a name that is no path (cifar10:resnet20)
        hit = _input_hit(path, Path(source)) if source else None
        if hit is not None:
            raise ValueError(f"--out {path} is {hit}, an input of this command; give another path")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; give another --out, or --overwrite to replace it")
    return path


# What a run folder holds that a command reading it uses (runlock.RUN_FILES' files).
_RUN_INPUTS = ("config.json", "metrics.jsonl", "summary.json", "views.json", "predictions.json")


def _input_hit(out: Path, source: Path) -> Path | None:
    """The input file `out` would replace: `source` itself, or one of a run folder's own
    files (its records, anything under checkpoints/)."""
    if not out.exists() or not source.exists():
        return None
    if source.is_dir():
        checkpoints = source / "checkpoints"
        if checkpoints.is_dir() and os.path.samefile(out.parent, checkpoints):
            return out
        candidates = [source / name for name in _RUN_INPUTS]
    else:
        candidates = [source]
    for c in candidates:
        if c.exists() and os.path.samefile(out, c):
            return c
    return None


def atomic_write(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write bytes (or call writer(f)) to `path` via temp file + fsync + rename (atomic on
    POSIX): a crash leaves the old file or the new one, never half of one. A full disk
    leaves the old file and raises OSError saying so."""
    path = check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid in the name lets a later run tell its own leftovers (after a
        # kill -9) from a live writer's file: see remove_stale_temporaries. The name is
        # cut at 64 characters: a legal 255-byte name plus pid and suffix would not be.
        prefix = f".{path.name[:64]}.{os.getpid()}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full(e)
        if full is not None:
            raise DiskFull(
                full, f"disk full while writing {path}; the previous file is kept"
            ) from None
        raise
    # fsync the folder so the rename itself is durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def disk_full(e: BaseException) -> int | None:
    """ENOSPC or EDQUOT if `e` or what caused it was a full disk or quota. torch.save
    reports its writer's OSError as a RuntimeError ("unexpected pos ...") raised while
    handling it, so the chain is searched too."""
    seen: BaseException | None = e
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def open_regular(path: Path, flags: int, mode: int = 0o666) -> int:
    """os.open of a file reslab writes in place (an append, a lock), never through a
    link: a link, device, FIFO or socket left where the file belongs is refused in one
    line, as atomic_write refuses one. Returns the descriptor (close-on-exec)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(
                f"{path} is a symbolic link; reslab does not write through "
                "links: remove it and run again"
            ) from None
        raise ValueError(f"cannot write {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(
            f"{path} is not a regular file (a device, FIFO or socket); remove it and run again"
        )
    return fd


def append_line(path: Path, line: str) -> None:
    """Append one line to `path` (see open_regular)."""
    with os.fdopen(open_regular(path, os.O_WRONLY | os.O_APPEND), "a") as f:
        f.write(line)


def remove_stale_temporaries(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete atomic_write's temporaries of `names` in `folder` whose writer is dead (a
    kill -9 mid-write leaves one). The caller holds the folder's lock, so no reslab
    process is writing these names; a name without a pid predates them."""
    removed = []
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            pid = tmp.name[len(name) + 2 :].split(".")[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Strict JSON (a NaN or infinity becomes null), written atomically."""
    return atomic_write(path, (json.dumps(finite(obj), indent=indent) + "\n").encode())


def finite(obj: Any) -> Any:
    """obj with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
