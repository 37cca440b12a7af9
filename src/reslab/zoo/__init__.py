"""Named weights: networks reslab trained and ships, found by name and checked by SHA-256.

    reslab.create_model("resnet56", weights="cifar10")
    reslab eval cifar10:resnet56 --data-dir DIR --split test

A name is "TAG:MODEL" (e.g. "cifar10:resnet56"). Each entry of a manifest
(`manifest.json` in this folder, or in a folder of your own named by
$RESLAB_WEIGHTS_DIR or `weights_dir=`) gives the file (in the same folder) and/or
a URL to fetch it from, its SHA-256, and a model card. The file is a
`.safetensors` state dict whose metadata records how it was built and fed
(`model_args`, classes, normalisation, input size, dataset), so evaluation and
prediction preprocess images as in training. `ship()` writes all three from a
finished run folder: weights, card and manifest entry, numbers taken from the run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.sources import digest_matches, download, file_digest

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
        for name, e in entries.items():
            if not NAME.match(name) or not {"model", "file", "sha256"} <= set(e):
                raise ValueError(f"{path}: entry {name!r} needs a TAG:MODEL name and "
                                 "'model', 'file', 'sha256'")  # fmt: skip
            card = folder / e["card"] if e.get("card") else None
            found[name] = NamedWeights(name, e["model"], folder / e["file"], e["sha256"],
                                       e.get("url"), card, e)  # fmt: skip
    return found


def resolve(
    name: str, weights_dir: str | Path | None = None, cache_dir: Path | None = None
) -> Path:
    """The checked local file for a name (downloading it if the manifest has a URL)."""
    entries = available(weights_dir)
    if name not in entries:
        have = ", ".join(sorted(entries)) or "none"
        raise ValueError(f"no weights named {name!r}; available: {have}")
    w = entries[name]
    from ..data.sources import default_cache_dir

    cached = (cache_dir or default_cache_dir()) / "weights" / w.file.name
    torch_hub = Path(os.environ.get("TORCH_HOME", "~/.cache/torch")).expanduser() / "hub"
    # Beside the manifest, in the user's folder, where torch.hub keeps what it fetched, or
    # in reslab's cache; else downloaded into the cache.
    candidates = [w.file, *(f / w.file.name for f in _folders(weights_dir)),
                  torch_hub / "checkpoints" / w.file.name, cached]  # fmt: skip
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


# ------------------------------------------------------------------------ writing


def ship(
    run_dir: str | Path, tag: str, out: str | Path = ZOO_DIR, *, results: str | None = None
) -> dict[str, Any]:
    """Publish a finished run's best weights as TAG:MODEL in folder `out`.

    Writes MODEL-TAG.safetensors, MODEL-TAG.md (the model card) and the manifest
    entry; every number comes from the run's own files. `results` names where the
    run's records are committed (for the card).
    """
    from ..inference import load_model
    from ..storage.files import atomic_write
    from ..weights import save_torchvision

    run = Path(run_dir)
    summary = json.loads((run / "summary.json").read_text())
    if summary.get("status") != "finished":
        raise ValueError(f"{run}: the run has not finished (status {summary.get('status')!r})")
    loaded = load_model(run / "checkpoints" / "best.pt")
    cfg = loaded.config
    model = loaded.model.spec.name
    best = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in best if r.get("kind") == "eval"]
    best_eval = min(evals, key=lambda r: r["top1_error"])
    exp_path = run.parent.parent / "experiment.json"
    exp = json.loads(exp_path.read_text()) if exp_path.exists() else {}
    prov = exp.get("provenance", {})
    meta = {
        "model_args": {k: v for k, v in loaded.model.build_args.items() if v is not None},
        "classes": loaded.classes,
        "normalization": loaded.normalization,
        "image_size": loaded.image_size,
        "dataset": cfg.get("dataset"),
    }
    out = Path(out)
    stem = f"{model}-{tag}"
    path = save_torchvision(loaded.model, out / f"{stem}.safetensors", meta)
    entry = {
        "model": model,
        "file": path.name,
        "sha256": file_digest(path, "sha256"),
        "url": None,
        "card": f"{stem}.md",
        "dataset": cfg.get("dataset"),
        "val_top1_error": round(best_eval["top1_error"], 2),
        "val_images": best_eval.get("n"),
        "step": best_eval["step"],
        "recipe": cfg.get("recipe"),
        "iterations": cfg.get("iterations"),
        "seed": cfg.get("seed"),
        "commit": prov.get("commit"),
        "command": prov.get("command"),
        "results": results,
    }
    atomic_write(out / entry["card"], _card(f"{tag}:{model}", entry, cfg, meta, prov).encode())
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[f"{tag}:{model}"] = entry
    text = json.dumps(dict(sorted(manifest.items())), indent=1) + "\n"
    atomic_write(manifest_path, text.encode())
    return entry


def _card(name: str, e: dict[str, Any], cfg: dict[str, Any], meta: dict, prov: dict) -> str:
    norm = meta["normalization"]
    pre = (
        "subtract the training split's per-pixel mean image and divide by one global std "
        f"({norm['std'][0]:.4f}); both are stored in the file's metadata"
        if norm.get("kind") == "pixel-mean"
        else f"per-channel mean {norm['mean']} and std {norm['std']}"
    )
    lr = cfg.get("lr") or cfg.get("lr_base")
    return f"""# {name}

{e["model"]} trained by reslab on {e["dataset"]} ({len(meta["classes"])} classes).

| | |
|---|---|
| validation top-1 error | **{e["val_top1_error"]:.2f}%** on {e["val_images"]} held-out training images (best evaluation, step {e["step"]}) |
| recipe | `{e["recipe"]}`, {e["iterations"]} iterations of batch {cfg.get("batch_size")}, lr {lr} ({cfg.get("schedule")}, warm-up {cfg.get("warmup_iters")} steps), weight decay {cfg.get("weight_decay")}, seed {e["seed"]} |
| how far | {e["iterations"] * cfg.get("batch_size", 128) / 45000:.1f} epochs of 45k images; the paper's CIFAR schedule is 64,000 iterations ({64000 * 128 / 45000:.0f} epochs) |
| data | {cfg.get("data_dir")}: the 45k/5k split of the training images (split seed {cfg.get("split_seed")}) |
| input | RGB {meta["image_size"]}x{meta["image_size"]}, values /255, then {pre} |
| trained by | `{e["command"]}` at commit `{e["commit"]}` on {prov.get("hardware", "unknown hardware")} |
| records | {e["results"] or "the run folder"} (config.json, metrics.jsonl, summary.json) |
| SHA-256 | `{e["sha256"]}` |

Use it:

    reslab eval {name} --data-dir CIFAR_DIR --split test
    model = reslab.create_model("{e["model"]}", weights="{name.split(":")[0]}")

The CIFAR-10 test split was not available where it was trained: the test error is
measured independently. The training images were JPEG copies (quality 75) of CIFAR-10,
so expect a few points of difference on the lossless originals.
"""
