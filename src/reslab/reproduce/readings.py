"""What an experiment's numbers show, in words: each of the paper's findings judged by
the one rule of verdict.py (a 95% interval over the seeds and the held-out images),
claiming only what that rule gives. report.py puts these lines under its tables."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import TrainConfig
from .runs import RUN_NAME, Run, depth, seed_groups
from .verdict import compare

# Table 3, ImageNet ResNet-34, 10-crop validation error (%): top-1, top-5.
PAPER_TABLE3 = {"A": (25.03, 7.76), "B": (24.52, 7.46), "C": (24.19, 7.40)}
RULE = (
    "Every verdict here is the rule of `reslab.reproduce.verdict.compare` (docs/results/"
    'README.md, "One rule for every finding"): a 95% interval, in points, for the gap '
    "between two nets' mean errors, from the seeds' spread (a pooled t-interval) and the "
    "sampling noise of the images scored (unpaired: two binomial errors; paired: the "
    "same images' per-image differences, where both nets recorded predictions); "
    "**shown** when the interval lies wholly on the claim's side of 0, **the opposite "
    "holds** when wholly on the other, else **not resolved**. Each line names its rule."
)

Get = Callable[[Run], "float | None"]


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


def _by_seed(runs: list[Run], get: Get) -> dict[int, float]:
    return {r.seed: v for r in runs if (v := get(r)) is not None}


def train_images(run: Run, intervals: int = 3) -> int:
    """Training images behind a training error read over `intervals` logged intervals."""
    batch = int(run.config.get("batch_size") or 128)
    return intervals * batch * int(run.config.get("log_every") or TrainConfig.log_every)


def judge(
    claim: str,
    a: str,
    b: str,
    runs_a: list[Run],
    runs_b: list[Run],
    get: Get,
    what: str,
    n: int,
    view: str | None = None,
) -> str | None:
    """`claim` (b's error below a's) judged by the rule: paired on `view`'s per-image
    predictions where every run of both nets recorded them, else unpaired."""
    va, vb = _by_seed(runs_a, get), _by_seed(runs_b, get)
    if not va or not vb or n < 1:
        return None
    wrong_a = [w for r in runs_a if (w := r.wrong(view))] if view else []
    wrong_b = [w for r in runs_b if (w := r.wrong(view))] if view else []
    if len(wrong_a) != len(runs_a) or len(wrong_b) != len(runs_b):
        wrong_a = wrong_b = []
    v = compare(va, vb, n, wrong_a=wrong_a or None, wrong_b=wrong_b or None)
    per = "; ".join(f"seed {s}: {vb[s]:.1f} vs {va[s]:.1f}" for s in sorted(set(va) & set(vb)))
    nums = f"{what}, {b} {sum(vb.values()) / len(vb):.1f}% vs {a} {sum(va.values()) / len(va):.1f}%"
    return f"{claim}: {v} ({nums}{'; ' + per if len(va) > 1 else ''})."


def read_figure4(runs: list[Run]) -> list[str]:
    """Section 4.1's findings (Figure 4, Table 2), each judged by the rule."""
    groups = seed_groups(runs)
    g = {r.model: groups[k] for k in groups for r in groups[k][:1]}
    if not {"plain18", "plain34", "resnet18", "resnet34"} <= set(g):
        return []
    total = int(runs[0].summary.get("iterations") or max(r["step"] for r in runs[0].train))
    early = max(1, total // 4)
    train, val, ten, at = (
        (lambda r: r.final_train),
        (lambda r: r.final_val),
        Run.ten_crop_error,
        (lambda r: r.train_error_at(early)),
    )
    n_tr, n_at = train_images(runs[0]), train_images(runs[0], 1)
    n_val = min(r.val_n for r in runs) or 0
    md = [
        judge(
            "Degradation (plain-34's training error above plain-18's)",
            "plain34",
            "plain18",
            g["plain34"],
            g["plain18"],
            train,
            "final train error",
            n_tr,
        ),
        judge(
            "Residual learning removes it (ResNet-34's training error below plain-34's)",
            "plain34",
            "resnet34",
            g["plain34"],
            g["resnet34"],
            train,
            "final train error",
            n_tr,
        ),
        judge(
            "ResNet-34's training error below ResNet-18's",
            "resnet18",
            "resnet34",
            g["resnet18"],
            g["resnet34"],
            train,
            "final train error",
            n_tr,
        ),
        judge(
            "ResNet-34's validation error below ResNet-18's",
            "resnet18",
            "resnet34",
            g["resnet18"],
            g["resnet34"],
            val,
            "final val top-1 (centre)",
            n_val,
            "center",
        ),
        judge(
            "ResNet-34's 10-crop validation error below ResNet-18's",
            "resnet18",
            "resnet34",
            g["resnet18"],
            g["resnet34"],
            ten,
            "10-crop val top-1",
            n_val,
            "ten-crop",
        ),
        judge(
            f"ResNet-18 ahead of plain-18 early in training (step ~{early} of {total})",
            "plain18",
            "resnet18",
            g["plain18"],
            g["resnet18"],
            at,
            "train error",
            n_at,
        ),
    ]
    return [line for line in md if line]


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
        return (
            f"{run.name}: never left the paper's 110-layer warm-up ({rule}): its "
            f"training error stayed above that, so it trained at {held:g} throughout."
        )
    return f"{run.name}: left the paper's 110-layer warm-up ({rule}) by step {left}."


def read_degradation(runs: list[Run]) -> list[str]:
    """Each finding of Figure 6 / Table 6, depth by depth (20 vs 56, 56 vs 110, ...)."""
    by_model: dict[str, list[Run]] = {}
    for r in runs:
        by_model.setdefault(r.model, []).append(r)
    plain = sorted((m for m in by_model if by_model[m][0].plain), key=depth)
    res = sorted((m for m in by_model if not by_model[m][0].plain), key=depth)
    n_tr = train_images(runs[0])
    n_val = min((r.val_n for r in runs if r.val_n), default=0)
    train, val = (lambda r: r.final_train), (lambda r: r.final_val)
    md: list[str | None] = []
    for a, b in zip(plain, plain[1:]):  # the claim: the deeper plain net trains worse
        md.append(
            judge(
                f"Degradation ({b}'s training error above {a}'s)",
                b,
                a,
                by_model[b],
                by_model[a],
                train,
                "final train error",
                n_tr,
            )
        )
    for a, b in zip(res, res[1:]):
        md.append(
            judge(
                f"Residual nets: {b}'s validation error below {a}'s",
                a,
                b,
                by_model[a],
                by_model[b],
                val,
                "final val top-1",
                n_val,
                "center",
            )
        )
        md.append(
            judge(
                f"Residual nets: {b}'s training error below {a}'s",
                a,
                b,
                by_model[a],
                by_model[b],
                train,
                "final train error",
                n_tr,
            )
        )
    for d in sorted({depth(m) for m in by_model}):
        p, q = f"plain{d}", f"resnet{d}"
        if p in by_model and q in by_model:
            md.append(
                judge(
                    f"{q}'s training error below {p}'s (residual learning)",
                    p,
                    q,
                    by_model[p],
                    by_model[q],
                    train,
                    "final train error",
                    n_tr,
                )
            )
    chance = 99.0 if runs[0].config.get("dataset") == "cifar100" else 90.0  # else 10 classes
    for m in plain:  # the paper's plain-110 "fails to train": how near chance it ends
        t = mean([r.final_train for r in by_model[m]])
        if t is not None and depth(m) >= 110:
            near = "near" if t > chance - 10 else "well below"
            md.append(f"{m} ends at {t:.1f}% training error, {near} chance ({chance:.0f}%).")
    md += [_read_warmup(r) for r in runs]
    return [line for line in md if line]


def read_shortcuts(groups: dict[str, list[Run]], opts: list[str], runs: list[Run]) -> list[str]:
    """The paper's C < B < A, pair by pair, judged by the rule (10-crop errors where every
    run has them, as Table 3; else the centre crop)."""
    ten = all(r.view_error("ten-crop") is not None for r in runs)
    get = Run.ten_crop_error if ten else Run.final_val.fget
    what = "10-crop val top-1" if ten else "final val top-1 (centre)"
    by = {groups[k][0].shortcut: groups[k] for k in opts}
    n = min(r.val_n for r in runs) or 0
    md: list[str] = []
    for a, b in (("A", "B"), ("B", "C"), ("A", "C")):
        if by.get(a) and by.get(b):
            claim = (
                f"Option {b} below option {a} (the paper: by "
                f"{PAPER_TABLE3[a][0] - PAPER_TABLE3[b][0]:.2f} points)"
            )
            line = judge(claim, a, b, by[a], by[b], get, what, n, "ten-crop" if ten else "center")
            if line:
                md.append(line)
    return md


def read_responses(responses: dict[str, list[float]]) -> list[str]:
    per_model: dict[str, list[float]] = {}
    for name, stds in responses.items():
        m = RUN_NAME.match(name)
        per_model.setdefault(m["model"] if m else name, []).append(sum(stds) / len(stds))
    avg = {k: sum(v) / len(v) for k, v in per_model.items()}
    md = []
    depths = sorted({depth(k) for k in avg})
    pairs = [
        (d, avg[f"plain{d}"], avg[f"resnet{d}"])
        for d in depths
        if f"plain{d}" in avg and f"resnet{d}" in avg
    ]
    if pairs:
        smaller = [d for d, p, q in pairs if q < p]
        detail = ", ".join(f"{d}: {q:.3f} vs {p:.3f}" for d, p, q in pairs)
        md.append(
            f"Mean response std, residual vs plain: {detail}. The residual net's responses "
            f"are smaller at {len(smaller)} of {len(pairs)} depths (the paper: ResNets "
            "have generally smaller responses than their plain counterparts)."
        )
    res = sorted((k for k in avg if k.startswith("resnet")), key=depth)
    if len(res) >= 2:
        a, b = res[0], res[-1]
        verdict = "smaller" if avg[b] < avg[a] else "not smaller"
        md.append(
            f"The deepest residual net's responses are {verdict} than the shallowest's "
            f"({b} {avg[b]:.3f} vs {a} {avg[a]:.3f}; the paper: deeper ResNets have "
            "smaller responses)."
        )
    return md
