"""The runs of an experiment folder, read back from their files: FOLDER/runs/NAME/
{config.json, metrics.jsonl, summary.json}, and what their names say."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import build, get_spec

RUN_NAME = re.compile(r"^(?P<model>[a-z]+\d+)(?:-(?P<shortcut>[A-Z]|none))?-s(?P<seed>\d+)$")


@dataclass
class Run:
    name: str
    model: str
    shortcut: str | None
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl "train" records
    val: list[dict[str, Any]] = field(default_factory=list)  # "eval" records on val
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # views.json: "ten-crop"...
    predictions: dict[str, list[int]] = field(default_factory=dict)  # predictions.json
    params: float | None = None  # millions

    @property
    def plain(self) -> bool:
        return self.model.startswith("plain") or self.shortcut == "none"

    @property
    def layers(self) -> int | None:
        try:
            return get_spec(self.model).layers
        except ValueError:
            return None

    @property
    def final_train(self) -> float | None:
        """Training error (%) at the end: the mean of the last 3 logged intervals."""
        last = [r["error"] for r in self.train[-3:] if "error" in r]
        return sum(last) / len(last) if last else None

    @property
    def final_val(self) -> float | None:
        rec = self.summary.get("final_eval") or (self.val[-1] if self.val else {})
        return rec.get("top1_error")

    def view_error(self, view: str, key: str = "top1_error") -> float | None:
        """The final network's error (%) in a view of views.json ("ten-crop"), if scored."""
        return (self.views.get(view) or {}).get(key)

    def wrong(self, view: str = "center") -> list[bool] | None:
        """Which validation images the final network got wrong in a view, in loader order,
        where predictions.json recorded them (the paired rule); else None."""
        got, labels = self.predictions.get(view), self.predictions.get("labels")
        if not got or not labels or len(got) != len(labels):
            return None
        return [p != y for p, y in zip(got, labels)]

    def ten_crop_error(self) -> float | None:
        return self.view_error("ten-crop")

    def train_error_at(self, step: int) -> float | None:
        """Training error (%) of the logged interval ending nearest `step` (early-training
        comparisons: section 4.1's "converges faster")."""
        recs = [r for r in self.train if "error" in r]
        return min(recs, key=lambda r: abs(r["step"] - step))["error"] if recs else None

    @property
    def best_val(self) -> float | None:
        errs = [r["top1_error"] for r in self.val]
        return self.summary.get("best_val_top1_error", min(errs) if errs else None)

    @property
    def val_n(self) -> int:
        rec = self.summary.get("final_eval") or (self.val[-1] if self.val else {})
        return int(rec.get("n", 0))


def read_json(path: Path) -> Any:
    """The file's JSON, None when there is no file; a damaged one is named."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _params(run_dir: Path, model: str, shortcut: str | None) -> float | None:
    """Millions of parameters, from the checkpoint's build arguments if there is one
    (an ImageFolder run's fc has its own class count), built on the meta device."""
    args: dict[str, Any] = {"name": model, "shortcut": shortcut}
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                args = dict(ckpt["model_args"])
                break
            except Exception:  # an unreadable checkpoint: fall back to the registry
                continue
    args.pop("weights", None)
    try:
        with torch.device("meta"):
            net = build(**args)
    except (ValueError, TypeError):
        return None
    return sum(p.numel() for p in net.parameters()) / 1e6


# Fields of metrics, summaries and views that hold numbers; the rates are percentages.
NUMBERS = frozenset(
    {
        "step",
        "epoch",
        "loss",
        "lr",
        "n",
        "images_per_s",
        "wall",
        "wall_s",
        "error",
        "top1_error",
        "top5_error",
        "best_val_top1_error",
    }
)
RATES = frozenset({"error", "top1_error", "top5_error", "best_val_top1_error"})


def checked_numbers(obj: Any, where: str) -> Any:
    """`obj` (a record, a summary, views) with its number fields checked: a null (a
    diverged loss) is dropped as unknown; anything but a finite number, or a rate
    outside 0-100 %, is refused in one line naming the file and field."""
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            value = checked_numbers(value, where)
        elif key in NUMBERS:
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{where}: {key!r} must be a number, got {json.dumps(value)[:40]}")
            if key in RATES and not 0 <= value <= 100:
                raise ValueError(f"{where}: {key!r} is an error rate in %, got {value}")
        out[key] = value
    return out


def machine_of(meta: dict[str, Any], run: Run) -> str:
    """The machine that trained `run`: experiment.json's "machines" (run -> machine, where
    an experiment moved between machines), else the one machine every recorded
    invocation names, else a line saying it is not recorded."""
    named = meta.get("machines") or {}
    if run.name in named:
        return named[run.name]
    seen = {i["hardware"] for i in meta.get("invocations", []) if i.get("hardware")}
    if meta.get("provenance", {}).get("hardware"):
        seen.add(meta["provenance"]["hardware"])
    if len(seen) == 1:
        return next(iter(seen))
    return f"a machine not recorded (invocations: {'; '.join(sorted(seen))})"


def load_runs(folder: str | Path) -> list[Run]:
    """Every run folder under FOLDER/runs/, sorted by name."""
    runs = []
    for d in sorted(Path(folder).glob("runs/*")):
        cfg = read_json(d / "config.json") or {}
        m = RUN_NAME.match(d.name)
        model = cfg.get("model") or (m["model"] if m else None)
        if model is None or not (d / "metrics.jsonl").is_file():
            continue
        shortcut = cfg.get("shortcut", m["shortcut"] if m else None)
        seed = int(cfg.get("seed", m["seed"] if m else 0))
        summary = checked_numbers(read_json(d / "summary.json") or {}, str(d / "summary.json"))
        run = Run(d.name, model, shortcut, seed, cfg, summary)
        run.views = checked_numbers(read_json(d / "views.json") or {}, str(d / "views.json"))
        run.predictions = read_json(d / "predictions.json") or {}
        for number, line in enumerate((d / "metrics.jsonl").read_text().splitlines(), 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            rec = checked_numbers(rec, f"{d / 'metrics.jsonl'} line {number}")
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                continue  # not one of reslab's records
            if rec.get("kind") == "train":
                run.train.append(rec)
            elif rec.get("kind") == "eval" and rec.get("split") == "val":
                run.val.append(rec)
        run.params = _params(d, model, shortcut)
        runs.append(run)
    return runs


def infer_experiment(runs: list[Run], has_responses: bool) -> str:
    """The experiment a folder without experiment.json most likely holds."""
    models = {r.model for r in runs}
    if not runs:
        return "responses" if has_responses else "unknown"
    if any(m.startswith("resnet1202") for m in models):
        return "very-deep"
    if len(models) == 1 and len({r.shortcut for r in runs}) > 1:
        return "shortcuts" if models & {"resnet18", "resnet34", "resnet50"} else "shortcuts-cifar"
    family = (
        "imagenet-"
        if any(m in ("plain18", "plain34", "resnet18", "resnet34") for m in models)
        else ""
    )
    return family + "degradation"


def seed_groups(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs that differ only in their seed, keyed by the run name without "-s<seed>"."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(re.sub(r"-s\d+$", "", r.name), []).append(r)
    return groups


def family_free(name: str) -> str:
    """ "plain32-A-s0" -> "32-A": what a colour stands for across plain and residual."""
    return re.sub(r"-s\d+$", "", re.sub(r"^(plain|resnet)", "", name))


def depth(model: str) -> int:
    m = re.search(r"\d+", model)
    return int(m[0]) if m else 0
