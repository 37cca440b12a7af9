"""What an experiment's numbers show, in words: each of the paper's findings read
against the sampling noise of one evaluation or the seeds' spread, claiming only what the
numbers show. report.py puts these lines under its tables."""

from __future__ import annotations

import math

from ..config import TrainConfig
from .runs import RUN_NAME, Run, depth, seed_groups

# Table 3, ImageNet ResNet-34, 10-crop validation error (%): top-1, top-5.
PAPER_TABLE3 = {"A": (25.03, 7.76), "B": (24.52, 7.46), "C": (24.19, 7.40)}


def mean_std(xs: list[float | None]) -> tuple[float, float, int] | None:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std, len(xs)


def fmt(xs: list[float | None], digits: int = 2) -> str:
    ms = mean_std(xs)
    if ms is None:
        return "—"
    mean, std, n = ms
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"


def mean(xs: list[float | None]) -> float | None:
    ms = mean_std(xs)
    return None if ms is None else ms[0]


def noise(p: float, n: int) -> float:
    """Two standard errors (percentage points) of an error rate p% measured on n images."""
    return 2 * math.sqrt(max(p * (100 - p), 1.0) / max(n, 1))


def differs(a: float, b: float, n: int) -> bool:
    """Whether two error rates, each on n images, differ by more than sampling noise."""
    return abs(a - b) > math.hypot(noise(a, n), noise(b, n))


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


def read_figure4(runs: list[Run]) -> list[str]:
    """Section 4.1's three findings (Figure 4, Table 2), each against the seeds' spread."""
    groups = seed_groups(runs)
    g = {r.model: groups[k] for k in groups for r in groups[k][:1]}
    if not {"plain18", "plain34", "resnet18", "resnet34"} <= set(g):
        return []
    total = int(runs[0].summary.get("iterations") or max(r["step"] for r in runs[0].train))
    early = max(1, total // 4)
    train, val, ten, at = (
        (lambda r: r.final_train), (lambda r: r.final_val),
        Run.ten_crop_error, (lambda r: r.train_error_at(early)),
    )  # fmt: skip
    md = [
        _versus("Degradation (plain-34's training error above plain-18's)", "plain34",
                "plain18", _by_seed(g["plain34"], train), _by_seed(g["plain18"], train),
                "final train error"),
        _versus("Residual learning removes it (ResNet-34's training error below plain-34's)",
                "plain34", "resnet34", _by_seed(g["plain34"], train),
                _by_seed(g["resnet34"], train), "final train error"),
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
    ma = mean([get(r) for r in by_model[a] if r.seed in seeds])
    mb = mean([get(r) for r in by_model[b] if r.seed in seeds])
    return ma, mb, seeds


def _over(seeds: list[int]) -> str:
    return f"mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"


def _read_plain_pair(a: str, b: str, ta: float, tb: float, seeds: list[int], n: int) -> str:
    gap = f"{tb:.1f}% vs {ta:.1f}%, {_over(seeds)}"
    if tb > ta and differs(tb, ta, n):
        return (f"{b} ends with higher training error than {a} ({gap}): the degradation "
                "problem shows at this budget.")  # fmt: skip
    if tb > ta:
        return (f"{b} ends with slightly higher training error than {a} ({gap}), within "
                "the sampling noise of the last logged batches: no clear degradation.")  # fmt: skip
    return (f"{b} does not end with higher training error than {a} ({gap}): the "
            "degradation problem does not show at this budget.")  # fmt: skip


def _read_residual_pair(a: str, b: str, va: float, vb: float, seeds: list[int], n: int) -> str:
    gap = f"final val top-1 {vb:.1f}% vs {va:.1f}% on {n} images, {_over(seeds)}"
    spread = math.hypot(noise(va, n), noise(vb, n))
    if vb < va and differs(vb, va, n):
        return f"Residual nets: deeper is better at this budget ({b} vs {a}: {gap})."
    if vb < va:
        return (f"Residual nets: deeper is better at this budget, by less than the sampling "
                f"noise of one evaluation (±{spread:.1f} points) ({b} vs {a}: {gap}).")  # fmt: skip
    if differs(vb, va, n):
        return f"Residual nets: deeper is not better at this budget ({b} vs {a}: {gap})."
    return f"Residual nets: {b} is not better than {a}, within sampling noise ({gap})."


def _read_warmup(run: Run) -> str | None:
    """How long a 110-layer net held the paper's constant warm-up lr (0.01 until training
    error < 80%): the rule ends on the net's own progress, so a net that never gets there
    trains at 0.01 throughout, and a reader must know that before reading its error."""
    limit = run.config.get("warmup_until_error")
    if run.config.get("warmup_lr") is None or not run.train or limit is None:
        return None
    # The warm-up lr as training sets it (recipes.learning_rate), not the first logged one:
    # a net past the warm-up by its first log starts elsewhere.
    keys = ("lr", "lr_base", "lr_base_batch", "batch_size")
    cfg = TrainConfig(**{k: run.config[k] for k in keys if run.config.get(k) is not None})
    held = run.config["warmup_lr"] * cfg.lr_factor()
    left = next((r["step"] for r in run.train if not math.isclose(r.get("lr", held), held)), None)
    rule = f"lr {held:g} until training error < {100 * limit:.0f}%"
    if left is None:
        return (f"{run.name}: never left the paper's 110-layer warm-up ({rule}): its "
                f"training error stayed above that, so it trained at {held:g} throughout.")  # fmt: skip
    return f"{run.name}: left the paper's 110-layer warm-up ({rule}) by step {left}."


def read_degradation(runs: list[Run]) -> list[str]:
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
        t = mean([r.final_train for r in by_model[m]])
        if t is not None and depth(m) >= 110:
            near = "near" if t > chance - 10 else "well below"
            md.append(f"{m} ends at {t:.1f}% training error, {near} chance ({chance:.0f}%).")
    md += [line for r in runs if (line := _read_warmup(r))]
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
    tr = {m: mean([r.final_train for r in by_model[m]]) for m in by_model}
    pairs = [(d, f"plain{d}", f"resnet{d}") for d in sorted({depth(m) for m in by_model})]
    pairs = [(d, p, q) for d, p, q in pairs if tr.get(p) is not None and tr.get(q) is not None]
    if pairs:
        wins = [d for d, p, q in pairs if tr[q] < tr[p]]
        detail = ", ".join(f"{d}: {tr[q]:.1f} vs {tr[p]:.1f}" for d, p, q in pairs)
        md.append(f"The residual net ends with lower training error than the plain net of the "
                  f"same depth at {len(wins)} of {len(pairs)} depths (residual vs plain, %: "
                  f"{detail}).")  # fmt: skip
    return md


def read_shortcuts(groups: dict[str, list[Run]], opts: list[str], runs: list[Run]) -> list[str]:
    """The paper's C < B < A, pair by pair, against the seeds' spread (10-crop errors where
    every run has them, as Table 3; else the centre crop)."""
    ten = all(r.view_error("ten-crop") is not None for r in runs)
    get = Run.ten_crop_error if ten else Run.final_val.fget
    what = "10-crop val top-1" if ten else "final val top-1 (centre)"
    by = {groups[k][0].shortcut: _by_seed(groups[k], get) for k in opts}
    n = min(r.val_n for r in runs) or 1
    md: list[str] = []
    for a, b in (("A", "B"), ("B", "C"), ("A", "C")):
        if by.get(a) and by.get(b):
            line = _versus(f"Option {b} below option {a} (the paper: by "
                           f"{PAPER_TABLE3[a][0] - PAPER_TABLE3[b][0]:.2f} points)",
                           a, b, by[a], by[b], what)  # fmt: skip
            if line is None:
                continue
            ma, mb = (sum(d.values()) / len(d) for d in (by[a], by[b]))
            if "not resolved" not in line and not differs(ma, mb, n):
                line += (f" The gap is beyond the seeds' spread but inside the sampling noise "
                         f"of {n} validation images (±{math.hypot(noise(ma, n), noise(mb, n)):.1f} "
                         "points for a difference): every run is scored on the same images, "
                         "so it may not carry over to others.")  # fmt: skip
            md.append(line)
    md.append(f"Sampling noise of one evaluation on {n} images: about ±"
              f"{noise(min(v for d in by.values() for v in d.values()), n):.1f} points per "
              "net (two standard errors).")  # fmt: skip
    return md


def read_responses(responses: dict[str, list[float]]) -> list[str]:
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
