"""Checkpoints that survive crashes and never run code when loaded.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts saved
with torch.save and read back with `torch.load(weights_only=True)`: a file
crafted to execute code on unpickling is refused by torch's restricted
unpickler. Writes go to a temporary file in the same folder, are fsync'ed, then
renamed over the old file, so a crash leaves either the old or the new file,
never half of one.

Keys (FORMAT "reslab-checkpoint" v1):
    model            state dict (torchvision names for ImageNet nets)
    model_args       create_model(**model_args) rebuilds the architecture
    classes          class names in label order
    normalization    how inputs were normalised (see reslab.data)
    image_size       training crop, pixels
    config           the resolved run config (dict)
    versions         reslab / torch / python versions
    and, for resuming: optimizer, step, epoch, batch_in_epoch, schedule, rng, best
"""

from __future__ import annotations

import io
import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import one_line
from .files import atomic_write

FORMAT = "reslab-checkpoint"
VERSION = 1
LAST, BEST, PREVIOUS = "last.pt", "best.pt", "previous.pt"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


def versions() -> dict[str, str]:
    return {
        "reslab": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to `path` atomically (see atomic_write)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


_IMAGE_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def image_kind(path: Path) -> str | None:
    """'JPEG', 'PNG', ... when the file starts like an image, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _IMAGE_MAGIC.items() if head.startswith(magic)), None)


EXPORT_RUNNERS = {
    "TorchScript export": "torch.jit.load(PATH) (or any TorchScript runtime)",
    "torch.export program (.pt2)": "torch.export.load(PATH).module(), or reslab.load_pt2(PATH) "
    "for an int8 one",
}


def export_kind(path: Path) -> str | None:
    """Which of reslab's exports a zip file is, from its member names, if any: both
    are zip archives as torch.save's checkpoints are, and torch.load would call them
    truncated."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "TorchScript export"
    if any("/models/" in n or n.endswith("archive_format") for n in names):
        return "torch.export program (.pt2)"
    return None


def load_file(path: str | Path) -> Any:
    """torch.load with weights_only=True and errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    kind = image_kind(path)
    if kind:
        raise CheckpointError(
            f"{path} is an image ({kind}), not a model: give a run folder, "
            "checkpoint or weights file first, then the images"
        )
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    if not head.startswith((b"PK", b"\x80")):  # torch.save's zip archive, or a pickle
        raise CheckpointError(
            f"{path}: not a PyTorch file (neither a zip archive nor a pickle; it starts {head!r})"
        )
    export = export_kind(path) if head.startswith(b"PK") else None
    if export:
        raise CheckpointError(
            f"{path} is a {export}; reslab's predict, eval, export and --init take run "
            "folders, checkpoints and weights files (.pt, .pth, .safetensors). Run the "
            f"export with {EXPORT_RUNNERS[export]}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any object it does not know, before constructing it. Only
        # its finding is kept: never torch's hint that weights_only=False "will likely succeed".
        lines = [x.strip() for x in str(e).splitlines()]
        why = next((x for x in lines if x.startswith(("Unsupported", "Trying to load"))), "")
        raise CheckpointError(
            f"{path}: refused to load: only tensors and plain data saved by torch.save are "
            f"accepted, and this file holds something else ({why or 'unknown content'})"
        ) from None
    except (
        RuntimeError,
        EOFError,
        KeyError,
        zipfile.BadZipFile,
        OSError,
        io.UnsupportedOperation,
    ) as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or foreign?): {one_line(e)}"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A reslab checkpoint, checked for the keys a model needs."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a reslab checkpoint (no 'format': {FORMAT!r} key); "
            "for a plain state dict use create_model(name, weights=PATH)"
        )
    missing = [k for k in ("model", "model_args") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks key(s) {', '.join(missing)}")
    return ckpt


def resolve(path: str | Path) -> Path:
    """A run folder (its checkpoints/best.pt, else last.pt) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"{path}: no checkpoints/{BEST} or checkpoints/{LAST} in this folder"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a run folder or a checkpoint)")
    return path


def load_resumable(run_dir: str | Path) -> tuple[dict[str, Any], Path]:
    """The newest good resume checkpoint of a run: last.pt, else previous.pt."""
    folder = Path(run_dir) / "checkpoints"
    errors = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            ckpt = load_checkpoint(path)
            if "optimizer" not in ckpt:
                raise CheckpointError(f"{path}: has no optimizer state; cannot resume from it")
            return ckpt, path
        except CheckpointError as e:
            errors.append(str(e))
    detail = "; ".join(errors) if errors else "no checkpoint files"
    raise CheckpointError(f"cannot resume {run_dir}: {detail}")
