"""The one rule that reads every finding: is net B's error below net A's?

`compare` takes the two nets' errors (%) seed by seed, and the number of images each
error was measured on, and returns a 95% interval (percentage points) for the gap
A - B between the two nets' mean errors, with one of three verdicts:

- "shown": the whole interval is above 0 (B below A, as the claim has it);
- "the opposite holds": the whole interval is below 0;
- "not resolved": the interval holds 0.

The interval's half-width adds two independent sources of error in quadrature:

1. The seeds: a pooled two-sample t-interval on the nets' per-seed errors,
   t(0.975, ka + kb - 2) * s * sqrt(1/ka + 1/kb), with s^2 the seeds' variance pooled
   over both nets. With 2 seeds each that is t(0.975, 2) = 4.30 standard errors: two
   seeds say little, and the rule says so. With one seed on both sides there is no
   spread to measure and this term is left out (the verdict then says "1 seed").
2. The images: every run of an experiment is scored on the same held-out images, so
   the seeds' spread cannot see how far those images stand for others. Unpaired (the
   conservative rule, all that a run's error alone allows): two independent binomial
   errors, 1.96 * sqrt(pa (100 - pa) / na + pb (100 - pb) / nb). Paired (where both nets
   recorded their predictions on the same images, predictions.json): the per-image
   difference of wrong answers, averaged over the seeds, has standard error
   sd / sqrt(n) (McNemar's test in its normal form); two nets that get mostly the
   same images right resolve far smaller gaps than the unpaired term allows.

The rule is deterministic (no resampling), so a report regenerates byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z95 = 1.959964
# t(0.975, df) for df = 1..30; above that a Cornish-Fisher expansion (error < 0.001).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
SHOWN, OPPOSITE, OPEN = "shown", "the opposite holds", "not resolved"


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with df degrees of freedom."""
    if df < 1:
        raise ValueError(f"t95 needs df >= 1, not {df}")
    if df <= len(_T95):
        return _T95[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Verdict:
    word: str  # SHOWN | OPPOSITE | OPEN
    gap: float  # mean error of A - mean error of B, points; > 0 as the claim has it
    half: float  # half-width of the 95% interval, points
    seeds: tuple[int, int]  # seeds behind A's and B's means
    images: int  # held-out images (or training images) each error was measured on
    paired: bool  # the per-image (paired) image term, else the unpaired binomial one

    @property
    def rule(self) -> str:
        return "paired" if self.paired else "unpaired"

    def interval(self) -> str:
        """ "+3.4 ± 4.9 points (95%; 2+2 seeds, 1,000 images, unpaired)"."""
        ka, kb = self.seeds
        seeds = "1 seed" if ka == kb == 1 else f"{ka}+{kb} seeds"
        return (
            f"{self.gap:+.1f} ± {self.half:.1f} points (95%; {seeds}, "
            f"{self.images:,} images, {self.rule})"
        )

    def __str__(self) -> str:
        return f"**{self.word}**: {self.interval()}"


def _pooled_variance(a: Sequence[float], b: Sequence[float]) -> tuple[float, int]:
    ss = sum((x - sum(v) / len(v)) ** 2 for v in (a, b) for x in v)
    df = len(a) + len(b) - 2
    return (ss / df if df else 0.0), df


def _paired_se(wrong_a: Sequence[Sequence[bool]], wrong_b: Sequence[Sequence[bool]]) -> float:
    """Standard error (points) of the mean per-image difference, each image's wrong
    answers averaged over the seeds of each net."""
    n = len(wrong_a[0])
    per_a = [sum(w[i] for w in wrong_a) / len(wrong_a) for i in range(n)]
    per_b = [sum(w[i] for w in wrong_b) / len(wrong_b) for i in range(n)]
    d = [100.0 * (x - y) for x, y in zip(per_a, per_b)]
    mean = sum(d) / n
    return math.sqrt(sum((x - mean) ** 2 for x in d) / max(n - 1, 1) / n)


def compare(
    a: Mapping[int, float],
    b: Mapping[int, float],
    n_a: int,
    n_b: int | None = None,
    wrong_a: Sequence[Sequence[bool]] | None = None,
    wrong_b: Sequence[Sequence[bool]] | None = None,
) -> Verdict:
    """Is B's error below A's? `a`, `b`: error (%) by seed; `n_a`, `n_b`: images each
    error was measured on; `wrong_a`, `wrong_b`: per seed, which of the same n images
    each net got wrong (the paired rule), or None (the unpaired rule)."""
    if not a or not b:
        raise ValueError("compare needs at least one seed of each net")
    n_b = n_a if n_b is None else n_b
    if n_a < 1 or n_b < 1:
        raise ValueError(f"compare needs images to have been scored (n = {n_a}, {n_b})")
    va, vb = list(a.values()), list(b.values())
    ma, mb = sum(va) / len(va), sum(vb) / len(vb)
    var, df = _pooled_variance(va, vb)
    seed_half = t95(df) * math.sqrt(var * (1 / len(va) + 1 / len(vb))) if df else 0.0
    paired = bool(wrong_a) and bool(wrong_b)
    if paired:
        lengths = {len(w) for w in (*wrong_a, *wrong_b)}  # type: ignore[misc]
        if len(lengths) != 1:
            raise ValueError(f"paired predictions cover different images ({sorted(lengths)})")
        se = _paired_se(wrong_a, wrong_b)  # type: ignore[arg-type]
        n_a = n_b = lengths.pop()
    else:
        pa, pb = (min(max(p, 0.0), 100.0) for p in (ma, mb))
        se = math.sqrt(pa * (100 - pa) / n_a + pb * (100 - pb) / n_b)
    half = math.hypot(seed_half, Z95 * se)
    gap = ma - mb
    word = SHOWN if gap - half > 0 else OPPOSITE if gap + half < 0 else OPEN
    return Verdict(word, gap, half, (len(va), len(vb)), min(n_a, n_b), paired)
