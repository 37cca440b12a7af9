"""FOLDER/report.md and its figures, from an experiment's files alone (no training).

Reads FOLDER/experiment.json (what was run; inferred from the runs when absent),
FOLDER/runs/*/{config.json, metrics.jsonl, summary.json} and FOLDER/responses.json,
and writes the paper's layouts: Figure 6/4 (training error dashed thin, validation
error bold, plain nets left, residual nets right), Tables 6/2/3 with the paper's
numbers beside ours, Figure 7 (layer responses), and a reading of the numbers that
claims only what they show.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..models import get_spec
from ..storage.files import atomic_write
from ..storage.runlock import LOCK, FolderLock
from .figures import Panel, plot_curves, plot_responses
from .readings import (
    PAPER_TABLE3,
    RULE,
    fmt,
    read_degradation,
    read_figure4,
    read_responses,
    read_shortcuts,
)
from .runs import Run, depth, infer_experiment, load_runs, machine_of, read_json, seed_groups
from .verdict import SHOWN, compare

# --- numbers -------------------------------------------------------------------------


def _paper(model: str, shortcut: str | None = None) -> tuple[str, float | None]:
    if model == "resnet34" and shortcut in PAPER_TABLE3:  # the paper measured each option
        return f"val, 10-crop, option {shortcut}", PAPER_TABLE3[shortcut][0]
    try:
        err = get_spec(model).paper_error
    except ValueError:
        return "", None
    for key, label in (("cifar10_test_top1", "test"), ("top1_10crop", "val, 10-crop")):
        if key in err:
            return label, err[key]
    return "", None


# --- markdown ------------------------------------------------------------------------


def _bullets(lines: list[str]) -> list[str]:
    return [f"- {line}" for line in lines] + [""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _header(name: str, meta: dict[str, Any], runs: list[Run]) -> list[str]:
    prov = meta.get("provenance", {})
    budget = meta.get("budget")
    title = f"# {name}" + (f" — {meta['figure']}" if meta.get("figure") else "")
    md = [title, ""]
    if not meta:
        md += [
            "No experiment.json in this folder: the command, commit and hardware are "
            "unknown and the experiment was inferred from the run names.",
            "",
        ]
    md += ["## What was run", ""]
    if prov:
        md += [
            f"- Command: `{prov.get('command', '?')}`",
            f"- Commit: `{prov.get('commit', '?')}`",
            f"- Hardware: {prov.get('hardware', '?')}"
            f"{' (' + ', '.join(prov['isa']) + ')' if prov.get('isa') else ''}; "
            f"torch {prov.get('torch', '?')}, "
            f"Python {prov.get('python', '?')}, malloc {prov.get('malloc', '?')}",
        ]
    md += _data_lines(meta, runs)
    if meta.get("runs_from"):
        md.append(f"- Networks: the runs of `{meta['runs_from']}`, split {meta.get('split')}")
    if meta.get("reused"):
        md.append(
            "- Reused, not trained again (the same settings, trained by another "
            "experiment): " + ", ".join(f"{k} from `{v}`" for k, v in meta["reused"].items())
        )
    seeds = sorted({r.seed for r in runs})
    if seeds or meta.get("seeds"):
        md.append(f"- Seeds: {', '.join(map(str, seeds)) if seeds else meta.get('seeds')}")
    if budget:
        md.append(f"- Budget: `{budget}` — {meta.get('budget_note', '')}")
    if meta.get("started"):
        # invocations before provenance was recorded are missing from meta's wall_s, and
        # runs overlap under --jobs: give the span, the runs' own sum and the recorded part
        run_s = sum(r.summary.get("wall_s") or 0 for r in runs)
        md.append(
            f"- Time: {meta['started']} to {meta.get('finished', '?')}; the runs' own wall "
            f"times add up to {_hms(run_s)} (they overlap under `--jobs`); recorded "
            f"invocations: {_hms(meta.get('wall_s'))}"
        )
    for inv in meta.get("invocations", [])[:-1] if len(meta.get("invocations", [])) > 1 else []:
        md.append(
            f"- Earlier invocation: `{inv['command']}` at `{inv['commit']}`, "
            f"{inv['started']}, {_hms(inv.get('wall_s'))}"
            f"{', on ' + inv['hardware'] if inv.get('hardware') else ''}"
        )
    if meta.get("note"):
        md.append(f"- Note: {meta['note']}")
    elif meta.get("finished"):
        md.append(f"- Date: {meta['finished']}")
    unfinished = [r.name for r in runs if r.summary.get("status") != "finished"]
    if unfinished:
        md.append(f"- Not finished (partial curves): {', '.join(unfinished)}")
    return md + _machines(meta, runs) + [""]


def _data_lines(meta: dict[str, Any], runs: list[Run]) -> list[str]:
    """What the nets trained on and were scored on: name, split, number of images."""
    prov = meta.get("provenance", {})
    datasets = sorted({str(r.config.get("dataset")) for r in runs if r.config.get("dataset")})
    data = prov.get("data_dir") or ", ".join(sorted({str(r.config.get("data_dir")) for r in runs}))
    md = []
    if meta.get("data"):  # a description written with the records (source, version, size)
        md.append(f"- Data: {meta['data']}")
    elif data or datasets:
        md.append(f"- Data: {', '.join(datasets) + ' from ' if datasets else ''}`{data or '?'}`")
    scored = sorted({r.val_n for r in runs if r.val_n})
    if scored:
        split = sorted({(r.config.get("val_size"), r.config.get("split_seed", 0)) for r in runs})
        how = (
            "; ".join(
                f"{v:,} held out of the training split, split seed {s}" for v, s in split if v
            )
            or "the validation split"
        )
        md.append(
            f"- Scored on: {' / '.join(f'{n:,}' for n in scored)} validation images "
            f"({how}); no test split"
        )
    return md


def _machines(meta: dict[str, Any], runs: list[Run]) -> list[str]:
    """Which machine trained each run (runs.machine_of), one line per machine."""
    by_machine: dict[str, list[str]] = {}
    for r in runs:
        by_machine.setdefault(machine_of(meta, r), []).append(r.name)
    return [f"- Trained on {m}: {', '.join(names)}" for m, names in sorted(by_machine.items())]


def _budget_caveat(meta: dict[str, Any], runs: list[Run]) -> list[str]:
    md = []
    if meta.get("budget") and meta["budget"] != "paper":
        md.append(
            f"This is the `{meta['budget']}` budget ({meta.get('budget_note', '')}), far "
            "shorter than the paper's schedule: errors are much higher than the paper's, "
            "and its numbers are given for orientation, not as a match."
        )
    vals = [(r.final_val, r.val_n) for r in runs if r.final_val is not None]
    cifar10 = all(r.config.get("dataset", "") == "cifar10" for r in runs)
    near_chance = all(compare({0: 90.0}, {0: v}, n).word != SHOWN for v, n in vals if n)
    if vals and cifar10 and near_chance:
        md.append(
            "Every network is within sampling noise of chance (90% error on CIFAR-10): "
            "this run shows that the pipeline works, not the paper's findings."
        )
    return md


def _row(runs: list[Run]) -> dict[str, str]:
    r0 = runs[0]
    return {
        "layers": str(r0.layers or "?"),
        "params": fmt([r0.params]),
        "train": fmt([r.final_train for r in runs]),
        "val": fmt([r.final_val for r in runs]),
        "best": fmt([r.best_val for r in runs]),
        "ten": fmt([r.view_error("ten-crop") for r in runs]),
        "ten5": fmt([r.view_error("ten-crop", "top5_error") for r in runs]),
    }


def _summary_table(runs: list[Run]) -> list[str]:
    ten = any(r.views for r in runs)  # Table 2: 10-crop beside the centre crop
    header = [
        "model",
        "layers",
        "params (M)",
        "final train error (%)",
        "final val top-1 (%), centre crop",
        *(["final val top-1 (%), 10-crop"] * ten),
        "best val top-1 (%)",
        "paper top-1 (%), full schedule",
    ]
    rows = []
    groups = seed_groups(runs)
    for key in sorted(groups, key=lambda k: (not groups[k][0].plain, depth(groups[k][0].model), k)):
        g = groups[key]
        row = _row(g)
        try:
            pp = get_spec(g[0].model).paper_params
        except ValueError:
            pp = None
        label, err = _paper(g[0].model, g[0].shortcut)
        params = row["params"] + (f" (paper {pp})" if pp else "")
        paper = f"{err} ({label})" if err is not None else "—"
        rows.append(
            [
                key,
                row["layers"],
                params,
                row["train"],
                row["val"],
                *([row["ten"]] * ten),
                row["best"],
                paper,
            ]
        )
    return _table(header, rows)


def _shortcuts(runs: list[Run]) -> list[str]:
    ten = any(r.views for r in runs)
    header = [
        "option",
        "model",
        "params (M)",
        "final train error (%)",
        "final val top-1 (%), centre crop",
        "final val top-5 (%)",
        *(["final val top-1 (%), 10-crop", "top-5, 10-crop"] * ten),
        "best val top-1 (%)",
    ]
    groups = seed_groups(runs)
    opts = sorted(groups, key=lambda k: (groups[k][0].shortcut or "", k))
    rows = []
    for key in opts:
        g, row = groups[key], _row(groups[key])
        top5 = fmt([(r.summary.get("final_eval") or {}).get("top5_error") for r in g])
        rows.append(
            [
                g[0].shortcut or "?",
                g[0].model,
                row["params"],
                row["train"],
                row["val"],
                top5,
                *([row["ten"], row["ten5"]] * ten),
                row["best"],
            ]
        )
    md = _table(header, rows)
    md += [
        "For context only, not comparable: the paper's Table 3 is **ImageNet ResNet-34**, "
        "10-crop validation error (%), full schedule:",
        "",
    ]
    md += _table(
        ["option", "top-1", "top-5"],
        [[o, f"{a:.2f}", f"{b:.2f}"] for o, (a, b) in PAPER_TABLE3.items()],
    )
    md += _bullets(read_shortcuts(groups, opts, runs))
    return md


def _step_seconds(r: Run) -> float | None:
    """Median seconds per training step over the logged intervals."""
    rates = sorted(rec["images_per_s"] for rec in r.train if rec.get("images_per_s"))
    batch = r.config.get("batch_size")
    return batch / rates[len(rates) // 2] if rates and batch else None


def _very_deep(runs: list[Run]) -> list[str]:
    header = [
        "model",
        "layers",
        "params (M)",
        "steps",
        "final train error (%)",
        "final val top-1 (%)",
        "best val top-1 (%)",
        "wall time",
        "s per step (median)",
        "peak memory (MB)",
        "paper top-1 (%), full schedule",
    ]
    rows, md = [], []
    for r in runs:
        row = _row([r])
        label, err = _paper(r.model, r.shortcut)
        mem, step_s = r.summary.get("peak_rss_mb"), _step_seconds(r)
        rows.append(
            [
                r.name,
                row["layers"],
                row["params"],
                f"{r.summary.get('step', '?')} / {r.summary.get('iterations', '?')}",
                row["train"],
                row["val"],
                row["best"],
                _hms(r.summary.get("wall_s")),
                f"{step_s:.1f}" if step_s else "—",
                f"{mem:.0f}" if isinstance(mem, (int, float)) else "not recorded",
                f"{err} ({label})" if err is not None else "—",
            ]
        )
        losses = [rec["loss"] for rec in r.train if "loss" in rec]
        if losses:
            finite = all(math.isfinite(x) for x in losses)
            first = ", ".join(f"{x:.2f}" for x in losses[:5])
            md.append(
                f"{r.name} trained {len(losses)} logged intervals; its training loss "
                + ("stayed finite (no divergence)" if finite else "became non-finite")
                + f"; the first logged losses: {first}."
            )
        if step_s:
            md.append(
                f"The paper's 64k iterations at this step time: {64_000 * step_s / 86_400:.1f} "
                "days on this machine."
            )
    md.append(
        "The paper trains the 1202-layer net to <0.1% training error; its 7.93% test "
        "error is worse than the 110-layer net's 6.43%, which the paper attributes to "
        "overfitting. **A CPU budget cannot show that finding**: it needs the full "
        "schedule. What it shows is that the network builds, fits in memory "
        "(activation checkpointing) and trains without diverging, and at what cost."
    )
    return _table(header, rows) + _bullets(md)


def write_report(folder: str | Path) -> Path:
    """Write FOLDER/report.md and its PNG figures from the files in FOLDER; returns
    the report's path. Trains nothing and touches no checkpoint. A folder that a running
    `reslab reproduce` holds (its .lock) is refused: that run writes the report itself."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such experiment folder")
    # Only a folder `reproduce` made has a .lock to take; no other gets one.
    with FolderLock(folder) if (folder / LOCK).exists() else nullcontext():
        return _write_report(folder)


def _write_report(folder: Path) -> Path:
    meta = read_json(folder / "experiment.json") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{folder / 'experiment.json'}: expected a JSON object")
    runs = load_runs(folder)
    responses = read_json(folder / "responses.json")
    name = meta.get("experiment") or infer_experiment(runs, responses is not None)
    if not runs and not responses:
        raise FileNotFoundError(f"{folder}: no runs/*/metrics.jsonl and no responses.json")
    md = _header(name, meta, runs)
    # Tables and readings from finished runs only; the header names the others, and
    # their partial curves are drawn.
    done = [r for r in runs if r.summary.get("status") == "finished"]
    if runs:
        if name in ("degradation", "imagenet-degradation"):
            panels: list[Panel] = [
                (
                    title,
                    [
                        (f"{depth(k)}-layer", depth(k), g)
                        for k, g in sorted(seed_groups(runs).items(), key=lambda kv: depth(kv[0]))
                        if g[0].plain == plain
                    ],
                )
                for title, plain in (("plain", True), ("ResNet", False))
            ]
            panels = [p for p in panels if p[1]]  # residual nets alone: one panel
            caption = (
                "Training error (dashed thin) and validation error (bold) against "
                "iterations"
                + ("; plain networks left, residual networks right." if len(panels) == 2 else ".")
            )
        else:
            panels = [(name, [(k, k, g) for k, g in seed_groups(runs).items()])]
            caption = "Training error (dashed thin) and validation error (bold) against iterations."
        plot_curves(panels, folder / "curves.png")
        md += ["## Training curves", "", "![training curves](curves.png)", "", caption, ""]
        md += ["## Results", ""]
        if name in ("shortcuts", "shortcuts-cifar"):
            md += _shortcuts(runs)
        elif name == "very-deep":
            md += _very_deep(runs)
        else:
            md += _summary_table(done)
            md += [
                "Final training error: the mean of the last 3 logged intervals. Paper: the "
                "test error (CIFAR-10, Table 6) or the 10-crop validation error (ImageNet, "
                "Table 2) after the paper's full schedule.",
                "",
            ]
            fig4 = read_figure4(done) if name == "imagenet-degradation" else []
            md += _bullets(fig4 or read_degradation(done))
        if name != "very-deep":
            md += [RULE, ""]
    if responses:
        plot_responses(responses, folder / "responses.png")
        md += [
            "",
            "## Layer responses (Figure 7)",
            "",
            "![layer responses](responses.png)",
            "",
            "Std of each 3x3 layer's response (after BN, before the addition and ReLU) on "
            "the validation split: per channel over images and positions, then averaged "
            "over channels. Left: in layer order; right: sorted by magnitude. Plain nets "
            "dashed, residual nets solid.",
            "",
        ]
        md += _bullets(read_responses(responses))
    md += ["", "## Caveats", "", *_bullets(_budget_caveat(meta, runs))]
    path = folder / "report.md"
    atomic_write(path, ("\n".join(md).rstrip() + "\n").encode())
    return path
