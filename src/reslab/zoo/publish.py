"""Publishing a finished run as named weights: the file, its model card, its manifest entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..inference import load_model
from ..storage.downloads import file_digest
from ..storage.files import atomic_write
from ..weights import save_torchvision
from . import MANIFEST, ZOO_DIR


def ship(
    run_dir: str | Path,
    tag: str,
    out: str | Path = ZOO_DIR,
    *,
    results: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish a finished run's best weights as TAG:MODEL in folder `out`.

    Writes MODEL-TAG.safetensors, MODEL-TAG.md (the model card) and the manifest
    entry; every number comes from the run's own files. `results` names where the
    run's records are committed (for the card); `provenance` (command, commit, hardware)
    is for a run that did not record its own.
    """
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
    # who made it: the run's own record, or its experiment's (runs of `reslab reproduce`
    # made before runs recorded their own), or what the caller knows
    exp_path = run.parent.parent / "experiment.json"
    exp = json.loads(exp_path.read_text()) if exp_path.exists() else {}
    prov = provenance or summary.get("provenance") or exp.get("provenance", {})
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


def _rgb(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _card(name: str, e: dict[str, Any], cfg: dict[str, Any], meta: dict, prov: dict) -> str:
    norm = meta["normalization"]
    pre = (
        "subtract the training split's per-pixel mean image and divide by one global std "
        f"({norm['std'][0]:.4f}); both are stored in the file's metadata"
        if norm.get("kind") == "pixel-mean"
        else f"per-channel mean {_rgb(norm['mean'])} and std {_rgb(norm['std'])}"
    )
    lr = cfg.get("lr") or cfg.get("lr_base")
    if cfg.get("schedule") == "step":  # the paper's: /10 at fixed steps
        steps = " and ".join(str(m) for m in cfg.get("milestones") or ()) or "no step"
        schedule = f"/{1 / cfg.get('gamma', 0.1):g} at {steps}"
    else:
        schedule = f"{cfg.get('schedule')}, warm-up {cfg.get('warmup_iters')} steps"
    if cfg.get("warmup_lr"):  # the paper's 110-layer rule
        schedule += (
            f", lr {cfg['warmup_lr']} until training error < "
            f"{100 * cfg.get('warmup_until_error', 0.8):.0f}%"
        )
    views = " --flip" * bool(cfg.get("eval_flip")) + (
        f" --shift {cfg['eval_shift']}" if cfg.get("eval_shift") else ""
    )
    return f"""# {name}

{e["model"]} trained by reslab on {e["dataset"]} ({len(meta["classes"])} classes).

| | |
|---|---|
| validation top-1 error | **{e["val_top1_error"]:.2f}%** on {e["val_images"]} held-out training images (best evaluation, step {e["step"]}) |
| test views | {f"the centre view averaged with `{views.strip()}` views (`reslab eval` with the same flags scores them so; without, centre only)" if views else "the centre view (`reslab eval`'s default)"} |
| recipe | `{e["recipe"]}`, {e["iterations"]} iterations of batch {cfg.get("batch_size")}, lr {lr} ({schedule}), weight decay {cfg.get("weight_decay")}{f", weights averaged (EMA, decay {cfg['ema_decay']}): the shipped weights are the average" if cfg.get("ema_decay") else ""}, seed {e["seed"]} |
| precision | {"bf16 autocast (weights and optimizer state in fp32)" if cfg.get("amp") == "bf16" else "fp16 autocast with loss scaling" if cfg.get("amp") == "fp16" else "fp32"} in training and in its evaluations |
| how far | {e["iterations"] * cfg.get("batch_size", 128) / 45000:.1f} epochs of 45k images; the paper's CIFAR schedule is 64,000 iterations ({64000 * 128 / 45000:.0f} epochs) |
| data | {prov.get("data_dir") or cfg.get("data_dir")}: the 45k/5k split of the training images (split seed {cfg.get("split_seed")}) |
| input | RGB {meta["image_size"]}x{meta["image_size"]}, values /255, then {pre} |
| trained by | `{e["command"]}` at commit `{e["commit"]}` on {prov.get("hardware", "unknown hardware")} |
| records | {e["results"] or "the run folder"} (config.json, metrics.jsonl, summary.json) |
| SHA-256 | `{e["sha256"]}` |

Use it:

    reslab eval {name} --data-dir CIFAR_DIR --split test{views}
    model = reslab.create_model("{e["model"]}", weights="{name.split(":")[0]}")

The CIFAR-10 test split was not available where it was trained: the test error is
measured independently. The training images were JPEG copies (quality 75) of CIFAR-10,
so expect a few points of difference on the lossless originals.
"""
