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
from .runs import RUN_NAME, Run, depth, infer_experiment, load_runs, read_json, seed_groups

# Table 3, ImageNet ResNet-34, 10-crop validation error (%): top-1, top-5.
PAPER_TABLE3 = {"A": (25.03, 7.76), "B": (24.52, 7.46), "C": (24.19, 7.40)}


# --- numbers -------------------------------------------------------------------------


def _mean_std(xs: list[float | None]) -> tuple[float, float, int] | None:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std, len(xs)


def _fmt(xs: list[float | None], digits: int = 2) -> str:
    ms = _mean_std(xs)
    if ms is None:
        return "—"
    mean, std, n = ms
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"


def _mean(xs: list[float | None]) -> float | None:
    ms = _mean_std(xs)
    return None if ms is None else ms[0]


def _noise(p: float, n: int) -> float:
    """Two standard errors (percentage points) of an error rate p% measured on n images."""
    return 2 * math.sqrt(max(p * (100 - p), 1.0) / max(n, 1))


def _differs(a: float, b: float, n: int) -> bool:
    """Whether two error rates, each on n images, differ by more than sampling noise."""
    return abs(a - b) > math.hypot(_noise(a, n), _noise(b, n))


def _paper(model: str) -> tuple[str, float | None]:
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
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]  # fmt: skip


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
        md += ["No experiment.json in this folder: the command, commit and hardware are "
               "unknown and the experiment was inferred from the run names.", ""]  # fmt: skip
    md += ["## What was run", ""]
    if prov:
        md += [f"- Command: `{prov.get('command', '?')}`", f"- Commit: `{prov.get('commit', '?')}`",
               f"- Hardware: {prov.get('hardware', '?')}; torch {prov.get('torch', '?')}, "
               f"Python {prov.get('python', '?')}, malloc {prov.get('malloc', '?')}"]  # fmt: skip
    datasets = sorted({str(r.config.get("dataset")) for r in runs if r.config.get("dataset")})
    data = prov.get("data_dir") or ", ".join(sorted({str(r.config.get("data_dir")) for r in runs}))
    if data or datasets:
        md.append(f"- Data: {', '.join(datasets) + ' from ' if datasets else ''}`{data or '?'}`")
    if meta.get("runs_from"):
        md.append(f"- Networks: the runs of `{meta['runs_from']}`, split {meta.get('split')}")
    seeds = sorted({r.seed for r in runs})
    if seeds or meta.get("seeds"):
        md.append(f"- Seeds: {', '.join(map(str, seeds)) if seeds else meta.get('seeds')}")
    if budget:
        md.append(f"- Budget: `{budget}` — {meta.get('budget_note', '')}")
    if meta.get("started"):
        # invocations before provenance was recorded are missing from meta's wall_s, and
        # runs overlap under --jobs: give the span, the runs' own sum and the recorded part
        run_s = sum(r.summary.get("wall_s") or 0 for r in runs)
        md.append(f"- Time: {meta['started']} to {meta.get('finished', '?')}; the runs' own wall "
                  f"times add up to {_hms(run_s)} (they overlap under `--jobs`); recorded "
                  f"invocations: {_hms(meta.get('wall_s'))}")  # fmt: skip
    for inv in meta.get("invocations", [])[:-1] if len(meta.get("invocations", [])) > 1 else []:
        md.append(f"- Earlier invocation: `{inv['command']}` at `{inv['commit']}`, "
                  f"{inv['started']}, {_hms(inv.get('wall_s'))}")  # fmt: skip
    if meta.get("note"):
        md.append(f"- Note: {meta['note']}")
    elif meta.get("finished"):
        md.append(f"- Date: {meta['finished']}")
    unfinished = [r.name for r in runs if r.summary.get("status") != "finished"]
    if unfinished:
        md.append(f"- Not finished (partial curves): {', '.join(unfinished)}")
    return md + [""]


def _budget_caveat(meta: dict[str, Any], runs: list[Run]) -> list[str]:
    md = []
    if meta.get("budget") and meta["budget"] != "paper":
        md.append(f"This is the `{meta['budget']}` budget ({meta.get('budget_note', '')}), far "
                  "shorter than the paper's schedule: errors are much higher than the paper's, "
                  "and its numbers are given for orientation, not as a match.")  # fmt: skip
    vals = [(r.final_val, r.val_n) for r in runs if r.final_val is not None]
    cifar10 = all(r.config.get("dataset", "") == "cifar10" for r in runs)
    if vals and cifar10 and all(v >= 90 or not _differs(v, 90, n) for v, n in vals):
        md.append("Every network is within sampling noise of chance (90% error on CIFAR-10): "
                  "this run shows that the pipeline works, not the paper's findings.")  # fmt: skip
    return md


def _row(runs: list[Run]) -> dict[str, str]:
    r0 = runs[0]
    return {
        "layers": str(r0.layers or "?"), "params": _fmt([r0.params]),
        "train": _fmt([r.final_train for r in runs]), "val": _fmt([r.final_val for r in runs]),
        "best": _fmt([r.best_val for r in runs]),
        "ten": _fmt([r.view_error("ten-crop") for r in runs]),
        "ten5": _fmt([r.view_error("ten-crop", "top5_error") for r in runs]),
    }  # fmt: skip


def _summary_table(runs: list[Run]) -> list[str]:
    ten = any(r.views for r in runs)  # Table 2: 10-crop beside the centre crop
    header = ["model", "layers", "params (M)", "final train error (%)",
              "final val top-1 (%), centre crop", *(["final val top-1 (%), 10-crop"] * ten),
              "best val top-1 (%)", "paper top-1 (%), full schedule"]  # fmt: skip
    rows = []
    groups = seed_groups(runs)
    for key in sorted(groups, key=lambda k: (not groups[k][0].plain, depth(groups[k][0].model), k)):
        g = groups[key]
        row = _row(g)
        try:
            pp = get_spec(g[0].model).paper_params
        except ValueError:
            pp = None
        label, err = _paper(g[0].model)
        params = row["params"] + (f" (paper {pp})" if pp else "")
        paper = f"{err} ({label})" if err is not None else "—"
        rows.append([key, row["layers"], params, row["train"], row["val"],
                     *([row["ten"]] * ten), row["best"], paper])  # fmt: skip
    return _table(header, rows)


def _by_seed(runs: list[Run], get) -> dict[int, float]:
    return {r.seed: v for r in runs if (v := get(r)) is not None}


def _versus(claim: str, a: str, b: str, va: dict[int, float], vb: dict[int, float],
            what: str) -> str | None:  # fmt: skip
    """Is `b` below `a` (the paper's claim), by more than the seed-to-seed spread?

    The spread is the larger of the two nets' ranges over seeds (max - min): a gap inside
    it is "not resolved at this budget", whichever way it points. With one seed there is
    no spread to compare with, and the report says so.
    """
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        return None
    ma = sum(va[s] for s in seeds) / len(seeds)
    mb = sum(vb[s] for s in seeds) / len(seeds)
    gap = ma - mb  # > 0: as the paper has it
    nums = f"{what} {mb:.1f}% vs {ma:.1f}%, {_over(seeds)}"
    if len(seeds) < 2:
        verdict = "in the paper's direction" if gap > 0 else "against the paper's direction"
        return f"{claim}: {verdict} by {abs(gap):.1f} points ({nums}); one seed, no spread to judge it by."
    spread = max(max(v[s] for s in seeds) - min(v[s] for s in seeds) for v in (va, vb))
    per = "; ".join(f"seed {s}: {vb[s]:.1f} vs {va[s]:.1f}" for s in seeds)
    if abs(gap) <= spread:
        verdict = "not resolved at this budget"
    elif gap > 0:
        verdict = "shown" if all(vb[s] < va[s] for s in seeds) else "shown on average only"
    else:
        verdict = "not shown (the opposite holds)"
    return (f"{claim}: **{verdict}**: {b} vs {a} differ by {gap:+.1f} points against a "
            f"seed-to-seed spread of {spread:.1f} ({nums}; {per}).")  # fmt: skip


def _read_figure4(runs: list[Run]) -> list[str]:
    """Section 4.1's three findings (Figure 4, Table 2), each against the seeds' spread."""
    groups = seed_groups(runs)
    g = {r.model: groups[k] for k in groups for r in groups[k][:1]}
    if not {"plain18", "plain34", "resnet18", "resnet34"} <= set(g):
        return []
    total = int(runs[0].summary.get("iterations") or max(r["step"] for r in runs[0].train))
    early = max(1, total // 4)
    train, val, ten, at = (
        (lambda r: r.final_train), (lambda r: r.final_val),
        (lambda r: r.view_error("ten-crop")), (lambda r: r.train_error_at(early)),
    )  # fmt: skip
    md = [
        _versus("Degradation (plain-34's training error above plain-18's)", "plain34",
                "plain18", _by_seed(g["plain34"], train), _by_seed(g["plain18"], train),
                "final train error"),
        _versus("ResNet-34's training error below ResNet-18's", "resnet18", "resnet34",
                _by_seed(g["resnet18"], train), _by_seed(g["resnet34"], train),
                "final train error"),
        _versus("ResNet-34's validation error below ResNet-18's", "resnet18", "resnet34",
                _by_seed(g["resnet18"], val), _by_seed(g["resnet34"], val),
                "final val top-1 (centre)"),
        _versus("ResNet-34's 10-crop validation error below ResNet-18's", "resnet18",
                "resnet34", _by_seed(g["resnet18"], ten), _by_seed(g["resnet34"], ten),
                "10-crop val top-1"),
        _versus(f"ResNet-18 ahead of plain-18 early in training (step ~{early} of {total})",
                "plain18", "resnet18", _by_seed(g["plain18"], at), _by_seed(g["resnet18"], at),
                "train error"),
    ]  # fmt: skip
    return [line for line in md if line]


def _at_common_seeds(by_model: dict[str, list[Run]], a: str, b: str, get) -> tuple:
    """Means of `get` for a and b over the seeds both ran (a 110-layer net may have run
    one seed where the shallower ones ran two: compare like with like), and the seeds."""
    seeds = sorted({r.seed for r in by_model[a]} & {r.seed for r in by_model[b]})
    ma = _mean([get(r) for r in by_model[a] if r.seed in seeds])
    mb = _mean([get(r) for r in by_model[b] if r.seed in seeds])
    return ma, mb, seeds


def _over(seeds: list[int]) -> str:
    return f"mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"


def _read_plain_pair(a: str, b: str, ta: float, tb: float, seeds: list[int], n: int) -> str:
    gap = f"{tb:.1f}% vs {ta:.1f}%, {_over(seeds)}"
    if tb > ta and _differs(tb, ta, n):
        return (f"{b} ends with higher training error than {a} ({gap}): the degradation "
                "problem shows at this budget.")  # fmt: skip
    if tb > ta:
        return (f"{b} ends with slightly higher training error than {a} ({gap}), within "
                "the sampling noise of the last logged batches: no clear degradation.")  # fmt: skip
    return (f"{b} does not end with higher training error than {a} ({gap}): the "
            "degradation problem does not show at this budget.")  # fmt: skip


def _read_residual_pair(a: str, b: str, va: float, vb: float, seeds: list[int], n: int) -> str:
    gap = f"final val top-1 {vb:.1f}% vs {va:.1f}% on {n} images, {_over(seeds)}"
    noise = math.hypot(_noise(va, n), _noise(vb, n))
    if vb < va and _differs(vb, va, n):
        return f"Residual nets: deeper is better at this budget ({b} vs {a}: {gap})."
    if vb < va:
        return (f"Residual nets: deeper is better at this budget, by less than the sampling "
                f"noise of one evaluation (±{noise:.1f} points) ({b} vs {a}: {gap}).")  # fmt: skip
    if _differs(vb, va, n):
        return f"Residual nets: deeper is not better at this budget ({b} vs {a}: {gap})."
    return f"Residual nets: {b} is not better than {a}, within sampling noise ({gap})."


def _read_degradation(runs: list[Run]) -> list[str]:
    """Each finding of Figure 6 / Table 6, depth by depth (20 vs 56, 56 vs 110, ...)."""
    by_model: dict[str, list[Run]] = {}
    for r in runs:
        by_model.setdefault(r.model, []).append(r)
    plain = sorted((m for m in by_model if by_model[m][0].plain), key=depth)
    res = sorted((m for m in by_model if not by_model[m][0].plain), key=depth)
    batch = int(runs[0].config.get("batch_size", 128))
    train_n = 3 * batch  # the last 3 logged intervals' batches, at least
    val_n = min((r.val_n for r in runs if r.val_n), default=1)
    train, val = (lambda r: r.final_train), (lambda r: r.final_val)
    md = []
    for a, b in zip(plain, plain[1:]):
        ta, tb, seeds = _at_common_seeds(by_model, a, b, train)
        if ta is not None and tb is not None:
            md.append(_read_plain_pair(a, b, ta, tb, seeds, train_n))
    for a, b in zip(res, res[1:]):
        va, vb, seeds = _at_common_seeds(by_model, a, b, val)
        if va is not None and vb is not None:
            md.append(_read_residual_pair(a, b, va, vb, seeds, val_n))
        ta, tb, seeds = _at_common_seeds(by_model, a, b, train)
        if ta is not None and tb is not None:
            lower = "lower" if tb < ta else "higher"
            md.append(f"{b} ends with {lower} training error than {a} ({tb:.1f}% vs "
                      f"{ta:.1f}%, {_over(seeds)}).")  # fmt: skip
    chance = 99.0 if runs[0].config.get("dataset") == "cifar100" else 90.0  # else 10 classes
    for m in plain:  # the paper's plain-110 "fails to train": how near chance it ends
        t = _mean([r.final_train for r in by_model[m]])
        if t is not None and depth(m) >= 110:
            near = "near" if t > chance - 10 else "well below"
            md.append(f"{m} ends at {t:.1f}% training error, {near} chance ({chance:.0f}%).")
    seeds = sorted({r.seed for r in runs})
    if len(seeds) > 1:  # the orderings seed by seed: is the mean's ordering luck?
        for models, metric, get in ((plain, "final train", train), (res, "final val", val)):
            for a, b in zip(models, models[1:]):
                per = []
                for seed in seeds:
                    ra = [get(r) for r in by_model[a] if r.seed == seed]
                    rb = [get(r) for r in by_model[b] if r.seed == seed]
                    if ra and rb and ra[0] is not None and rb[0] is not None:
                        per.append(f"seed {seed}: {rb[0]:.1f} vs {ra[0]:.1f}")
                if len(per) > 1:
                    md.append(f"Seed by seed, {b} vs {a} ({metric} error, %): {'; '.join(per)}.")
    tr = {m: _mean([r.final_train for r in by_model[m]]) for m in by_model}
    pairs = [(d, f"plain{d}", f"resnet{d}") for d in sorted({depth(m) for m in by_model})]
    pairs = [(d, p, q) for d, p, q in pairs if tr.get(p) is not None and tr.get(q) is not None]
    if pairs:
        wins = [d for d, p, q in pairs if tr[q] < tr[p]]
        detail = ", ".join(f"{d}: {tr[q]:.1f} vs {tr[p]:.1f}" for d, p, q in pairs)
        md.append(f"The residual net ends with lower training error than the plain net of the "
                  f"same depth at {len(wins)} of {len(pairs)} depths (residual vs plain, %: "
                  f"{detail}).")  # fmt: skip
    return md


def _shortcuts(runs: list[Run]) -> list[str]:
    ten = any(r.views for r in runs)
    header = ["option", "model", "params (M)", "final train error (%)",
              "final val top-1 (%), centre crop", "final val top-5 (%)",
              *(["final val top-1 (%), 10-crop", "top-5, 10-crop"] * ten),
              "best val top-1 (%)"]  # fmt: skip
    groups = seed_groups(runs)
    opts = sorted(groups, key=lambda k: (groups[k][0].shortcut or "", k))
    rows = []
    for key in opts:
        g, row = groups[key], _row(groups[key])
        top5 = _fmt([(r.summary.get("final_eval") or {}).get("top5_error") for r in g])
        rows.append([g[0].shortcut or "?", g[0].model, row["params"], row["train"], row["val"],
                     top5, *([row["ten"], row["ten5"]] * ten), row["best"]])  # fmt: skip
    md = _table(header, rows)
    md += ["For context only, not comparable: the paper's Table 3 is **ImageNet ResNet-34**, "
           "10-crop validation error (%), full schedule:", ""]  # fmt: skip
    md += _table(["option", "top-1", "top-5"],
                 [[o, f"{a:.2f}", f"{b:.2f}"] for o, (a, b) in PAPER_TABLE3.items()])  # fmt: skip
    md += _bullets(_read_shortcuts(groups, opts, runs))
    return md


def _read_shortcuts(groups: dict[str, list[Run]], opts: list[str], runs: list[Run]) -> list[str]:
    """The paper's C < B < A, pair by pair, against the seeds' spread (10-crop errors where
    every run has them, as Table 3; else the centre crop)."""
    ten = all(r.view_error("ten-crop") is not None for r in runs)
    get = Run.ten_crop_error if ten else Run.final_val.fget
    what = "10-crop val top-1" if ten else "final val top-1 (centre)"
    by = {groups[k][0].shortcut: _by_seed(groups[k], get) for k in opts}
    md: list[str] = []
    for a, b in (("A", "B"), ("B", "C"), ("A", "C")):
        if by.get(a) and by.get(b):
            line = _versus(f"Option {b} below option {a} (the paper: by "
                           f"{PAPER_TABLE3[a][0] - PAPER_TABLE3[b][0]:.2f} points)",
                           a, b, by[a], by[b], what)  # fmt: skip
            md += [line] if line else []
    n = min(r.val_n for r in runs) or 1
    md.append(f"Sampling noise of one evaluation on {n} images: about ±"
              f"{_noise(min(v for d in by.values() for v in d.values()), n):.1f} points per "
              "net (two standard errors).")  # fmt: skip
    return md


def _very_deep(runs: list[Run]) -> list[str]:
    header = ["model", "layers", "params (M)", "steps", "final train error (%)",
              "final val top-1 (%)", "best val top-1 (%)", "wall time", "peak memory (MB)",
              "paper top-1 (%), full schedule"]  # fmt: skip
    rows, md = [], []
    for r in runs:
        row = _row([r])
        label, err = _paper(r.model)
        mem = r.summary.get("peak_rss_mb")
        rows.append([r.name, row["layers"], row["params"],
                     f"{r.summary.get('step', '?')} / {r.summary.get('iterations', '?')}",
                     row["train"], row["val"], row["best"], _hms(r.summary.get("wall_s")),
                     f"{mem:.0f}" if isinstance(mem, (int, float)) else "not recorded",
                     f"{err} ({label})" if err is not None else "—"])  # fmt: skip
        losses = [rec["loss"] for rec in r.train if "loss" in rec]
        if losses:
            finite = all(math.isfinite(x) for x in losses)
            md.append(f"{r.name} trained {len(losses)} logged intervals; its training loss "
                      + ("stayed finite (no divergence)." if finite else "became non-finite."))  # fmt: skip
    md.append("The paper trains the 1202-layer net to <0.1% training error; its 7.93% test "
              "error is worse than the 110-layer net's 6.43%, which the paper attributes to "
              "overfitting.")  # fmt: skip
    return _table(header, rows) + _bullets(md)


def _read_responses(responses: dict[str, list[float]]) -> list[str]:
    per_model: dict[str, list[float]] = {}
    for name, stds in responses.items():
        m = RUN_NAME.match(name)
        per_model.setdefault(m["model"] if m else name, []).append(sum(stds) / len(stds))
    avg = {k: sum(v) / len(v) for k, v in per_model.items()}
    md = []
    depths = sorted({depth(k) for k in avg})
    pairs = [(d, avg[f"plain{d}"], avg[f"resnet{d}"]) for d in depths
             if f"plain{d}" in avg and f"resnet{d}" in avg]  # fmt: skip
    if pairs:
        smaller = [d for d, p, q in pairs if q < p]
        detail = ", ".join(f"{d}: {q:.3f} vs {p:.3f}" for d, p, q in pairs)
        md.append(f"Mean response std, residual vs plain: {detail}. The residual net's responses "
                  f"are smaller at {len(smaller)} of {len(pairs)} depths (the paper: ResNets "
                  "have generally smaller responses than their plain counterparts).")  # fmt: skip
    res = sorted((k for k in avg if k.startswith("resnet")), key=depth)
    if len(res) >= 2:
        a, b = res[0], res[-1]
        verdict = "smaller" if avg[b] < avg[a] else "not smaller"
        md.append(f"The deepest residual net's responses are {verdict} than the shallowest's "
                  f"({b} {avg[b]:.3f} vs {a} {avg[a]:.3f}; the paper: deeper ResNets have "
                  "smaller responses).")  # fmt: skip
    return md


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
                (title, [(f"{depth(k)}-layer", depth(k), g) for k, g in
                         sorted(seed_groups(runs).items(), key=lambda kv: depth(kv[0]))
                         if g[0].plain == plain])
                for title, plain in (("plain", True), ("ResNet", False))
            ]  # fmt: skip
            caption = ("Training error (dashed thin) and validation error (bold) against "
                       "iterations; plain networks left, residual networks right.")  # fmt: skip
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
            md += ["Final training error: the mean of the last 3 logged intervals. Paper: the "
                   "test error (CIFAR-10, Table 6) or the 10-crop validation error (ImageNet, "
                   "Table 2) after the paper's full schedule.", ""]  # fmt: skip
            fig4 = _read_figure4(done) if name == "imagenet-degradation" else []
            md += _bullets(fig4 or _read_degradation(done))
    if responses:
        plot_responses(responses, folder / "responses.png")
        md += ["", "## Layer responses (Figure 7)", "", "![layer responses](responses.png)", "",
               "Std of each 3x3 layer's response (after BN, before the addition and ReLU) on "
               "the validation split: per channel over images and positions, then averaged "
               "over channels. Left: in layer order; right: sorted by magnitude. Plain nets "
               "dashed, residual nets solid.", ""]  # fmt: skip
        md += _bullets(_read_responses(responses))
    md += ["", "## Caveats", "", *_bullets(_budget_caveat(meta, runs))]
    path = folder / "report.md"
    atomic_write(path, ("\n".join(md).rstrip() + "\n").encode())
    return path
