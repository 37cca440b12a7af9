"""Named weights: networks reslab trained and ships, found by name and checked by SHA-256.

    reslab.create_model("resnet56", weights="cifar10")
    reslab eval cifar10:resnet56 --data-dir DIR --split test

A name is "TAG:MODEL" (e.g. "cifar10:resnet56"). Each entry of a manifest
(`manifest.json` in this folder, or in a folder of your own named by
$RESLAB_WEIGHTS_DIR or `weights_dir=`) gives the file (in the same folder) and/or
a URL to fetch it from, its SHA-256, and a model card. The file is a
`.safetensors` state dict whose metadata records how it was built and fed
(`model_args`, classes, normalisation, input size, dataset), so evaluation and
prediction preprocess images as in training. `reslab.zoo.publish.ship()` writes all three
from a finished run folder: weights, card and manifest entry, numbers taken from the run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage.downloads import default_cache_dir, digest_matches, download, file_digest

ZOO_DIR = Path(__file__).parent
MANIFEST = "manifest.json"  # reslab's own trained networks, files beside it
PUBLISHED = "published.json"  # others' files (torchvision's ImageNet weights): found or fetched
NAME = re.compile(r"^(?P<tag>[a-z0-9][a-z0-9_-]*):(?P<model>[a-z0-9_]+)$")


@dataclass(frozen=True)
class NamedWeights:
    name: str  # "cifar10:resnet56"
    model: str
    file: Path  # where the weights are (or will be, once downloaded)
    sha256: str
    url: str | None
    card: Path | None
    info: dict[str, Any]  # the manifest entry (metrics, run, recipe...)
    manifest: Path | None = None  # the manifest.json (or published.json) that names it


def is_name(text: object) -> bool:
    return isinstance(text, str) and NAME.match(text) is not None and not Path(text).exists()


def _folders(weights_dir: str | Path | None) -> list[Path]:
    """The user's folder first (its entries win), then the shipped one."""
    extra = weights_dir or os.environ.get("RESLAB_WEIGHTS_DIR")
    return ([Path(extra).expanduser()] if extra else []) + [ZOO_DIR]


def available(weights_dir: str | Path | None = None) -> dict[str, NamedWeights]:
    """Every named weight set, from the user's manifest and the shipped one."""
    found: dict[str, NamedWeights] = {}
    paths = [ZOO_DIR / PUBLISHED] + [f / MANIFEST for f in reversed(_folders(weights_dir))]
    for path in paths:
        folder = path.parent
        if not path.is_file():
            continue
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read the weights manifest ({e})") from None
        if not isinstance(entries, dict):
            raise ValueError(
                f"{path}: a weights manifest is an object of TAG:MODEL entries, "
                f"not {type(entries).__name__}"
            )
        for name, e in entries.items():
            if (
                not NAME.match(name)
                or not isinstance(e, dict)
                or not {"model", "file", "sha256"} <= set(e)
            ):
                raise ValueError(
                    f"{path}: entry {name!r} needs a TAG:MODEL name and an object "
                    "with 'model', 'file', 'sha256'"
                )
            for key in ("model", "file", "sha256", "card", "url"):
                if (
                    key in e
                    and not isinstance(e[key], str)
                    and not (key in ("card", "url") and e[key] is None)
                ):
                    raise ValueError(
                        f"{path}: entry {name!r}: {key!r} must be a string, "
                        f"got {json.dumps(e[key])}"
                    )
            card = folder / e["card"] if e.get("card") else None
            found[name] = NamedWeights(
                name, e["model"], folder / e["file"], e["sha256"], e.get("url"), card, e, path
            )
    return found


def entry(name: str, weights_dir: str | Path | None = None) -> NamedWeights:
    """The manifest entry of a name, or a ValueError listing the names there are."""
    entries = available(weights_dir)
    if name not in entries:
        have = ", ".join(sorted(entries)) or "none"
        raise ValueError(f"no weights named {name!r}; available: {have}")
    return entries[name]


def resolve(
    name: str, weights_dir: str | Path | None = None, cache_dir: Path | None = None
) -> Path:
    """The checked local file for a name (downloading it if the manifest has a URL)."""
    w = entry(name, weights_dir)
    cached = (cache_dir or default_cache_dir()) / "weights" / w.file.name
    torch_hub = Path(os.environ.get("TORCH_HOME", "~/.cache/torch")).expanduser() / "hub"
    # Beside the manifest, in the user's folder, where torch.hub keeps what it fetched, or
    # in reslab's cache; else downloaded into the cache.
    candidates = [
        w.file,
        *(f / w.file.name for f in _folders(weights_dir)),
        torch_hub / "checkpoints" / w.file.name,
        cached,
    ]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if not w.url:
            raise ValueError(f"{name}: weights file {w.file} is missing and no URL is known")
        path = download(w.url, cached, w.sha256, algo="sha256")
    got = file_digest(path, "sha256")
    if not digest_matches(got, w.sha256):
        raise ValueError(
            f"{path}: SHA-256 {got[:16]}... does not match {name}'s {w.sha256[:16]}...; "
            "the file is damaged or not the published one"
        )
    return path


def weights_for(model: str, tag: str, weights_dir: str | Path | None = None) -> Path:
    """create_model(model, weights=tag): the file of "tag:model"."""
    return resolve(f"{tag}:{model}", weights_dir)
