"""The report's figures, drawn with matplotlib's object API (no pyplot state): Figure 6/4
training curves and Figure 7 layer responses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..storage.files import atomic_write
from .runs import Run, depth, family_free


def _save(fig: Any, path: Path) -> Path:
    """The PNG written as every file reslab makes: beside, then renamed, never through a
    link left at `path`."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def _figure(ncols: int, width: float = 5.5):
    """A matplotlib Figure without pyplot (no global state, Agg by default for PNG)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "reslab report draws its figures with matplotlib: pip install 'reslab[plot]'"
        ) from e
    fig = Figure(figsize=(width * ncols, 4.2), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _colours(keys: list[Any]) -> dict[Any, str]:
    """One colour per key (a depth, an option), the same in every panel."""
    palette = [
        "tab:blue",
        "tab:orange",
        "tab:green",
        "tab:red",
        "tab:purple",
        "tab:brown",
        "tab:pink",
        "tab:gray",
        "tab:olive",
        "tab:cyan",
    ]
    return {k: palette[i % len(palette)] for i, k in enumerate(sorted(set(keys)))}


def _mean_curve(runs: list[Run], attr: str, key: str) -> tuple[list[int], list[float]]:
    """Mean over seeds at the steps every seed logged."""
    per_step: dict[int, list[float]] = {}
    for r in runs:
        for rec in getattr(r, attr):
            if key in rec:
                per_step.setdefault(int(rec["step"]), []).append(float(rec[key]))
    steps = sorted(s for s, v in per_step.items() if len(v) == len(runs))
    return steps, [sum(per_step[s]) / len(runs) for s in steps]


Panel = tuple[str, list[tuple[str, Any, list[Run]]]]  # title, [(label, colour key, runs)]


def plot_curves(panels: list[Panel], path: Path) -> Path:
    """Figure 6/4 layout: per panel, training error dashed thin and validation error
    bold solid, one colour per label, against iterations."""
    from matplotlib.lines import Line2D

    fig, axes = _figure(len(panels))
    colour = _colours([c for _, lines in panels for _, c, _ in lines])
    for ax, (title, lines) in zip(axes, panels):
        for label, key, runs in lines:
            c = colour[key]
            ax.plot(*_mean_curve(runs, "train", "error"), "--", color=c, lw=0.8, alpha=0.8)
            ax.plot(*_mean_curve(runs, "val", "top1_error"), "-", color=c, lw=2.2, label=label)
        style = [
            Line2D([], [], color="k", ls="--", lw=0.8, label="train"),
            Line2D([], [], color="k", lw=2.2, label="val"),
        ]
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + style, fontsize=8)
        ax.set(title=title, xlabel="iterations", ylabel="error (%)")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_responses(responses: dict[str, list[float]], path: Path) -> Path:
    """Figure 7 layout: std per layer in layer order (left) and sorted (right)."""
    fig, (ax1, ax2) = _figure(2)
    # Colour per depth (plain20 and resnet20 share one); other variants get their own.
    key = {n: (depth(family_free(n)), family_free(n)) for n in responses}
    colour = _colours(list(key.values()))
    for name, stds in responses.items():
        style = dict(
            color=colour[key[name]],
            lw=1.4,
            label=name,
            ls="--" if name.startswith("plain") else "-",
        )
        ax1.plot(range(1, len(stds) + 1), stds, **style)
        ax2.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), **style)
    ax1.set(title="layer index (original)", xlabel="layer index", ylabel="std")
    ax2.set(title="layer index (sorted by magnitude)", xlabel="layer index", ylabel="std")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    return _save(fig, path)
