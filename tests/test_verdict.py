"""The one rule behind every finding (reproduce/verdict.py): its interval by hand."""

from __future__ import annotations

import math

import pytest

from reslab.reproduce.verdict import OPEN, OPPOSITE, SHOWN, compare, t95


def test_t95_matches_the_table_and_tends_to_the_normal() -> None:
    assert t95(1) == 12.706 and t95(2) == 4.303
    assert t95(11) == 2.201 and t95(31) == pytest.approx(2.040, abs=1e-3)
    with pytest.raises(ValueError):
        t95(0)


def test_unpaired_interval_adds_seeds_and_images_in_quadrature() -> None:
    """ResNet-18 vs ResNet-34, 10-crop, Imagenette (imagenet-degradation-cpu's numbers)."""
    v = compare({0: 31.7, 1: 30.8}, {0: 35.0, 1: 34.2}, 1000)
    # pooled seed variance (0.405 + 0.32) / 2 over 2 df; images: two binomial errors
    seeds = 4.303 * math.sqrt((0.405 + 0.32) / 2 * (1 / 2 + 1 / 2))
    images = 1.959964 * math.sqrt(31.25 * 68.75 / 1000 + 34.6 * 65.4 / 1000)
    assert v.gap == pytest.approx(-3.35) and v.half == pytest.approx(math.hypot(seeds, images))
    assert v.word == OPEN and not v.paired
    assert v.interval() == "-3.4 ± 4.9 points (95%; 2+2 seeds, 1,000 images, unpaired)"


@pytest.mark.parametrize("seeds", [2, 3])
def test_a_large_gap_is_shown_and_its_reverse_the_opposite(seeds: int) -> None:
    a = {s: 60.0 + 0.3 * s for s in range(seeds)}
    b = {s: 30.0 - 0.2 * s for s in range(seeds)}
    assert compare(a, b, 5000).word == SHOWN
    assert compare(b, a, 5000).word == OPPOSITE
    assert compare(a, b, 5000).seeds == (seeds, seeds)


def test_one_seed_leaves_out_the_seed_term() -> None:
    v = compare({0: 13.7}, {0: 11.7}, 5000)
    assert v.half == pytest.approx(1.959964 * math.sqrt((13.7 * 86.3 + 11.7 * 88.3) / 5000))
    assert "1 seed" in v.interval() and v.word == SHOWN


def test_paired_resolves_what_unpaired_cannot() -> None:
    """Two nets that get the same images wrong but 25 of 5,000: unpaired leaves 0.5
    points open, paired (McNemar's normal form) resolves it."""
    a = [[i < 450 for i in range(5000)]] * 2  # 9.0% wrong, same images in both seeds
    b = [[i < 425 for i in range(5000)]] * 2  # 8.5%, a subset of a's mistakes
    errs_a, errs_b = {0: 9.0, 1: 9.0}, {0: 8.5, 1: 8.5}
    assert compare(errs_a, errs_b, 5000).word == OPEN
    v = compare(errs_a, errs_b, 5000, wrong_a=a, wrong_b=b)
    assert v.paired and v.word == SHOWN
    d = 0.5  # points: 25 images of 5,000 differ by 100 points each
    se = math.sqrt((25 * (100 - d) ** 2 + 4975 * d**2) / 4999 / 5000)
    assert v.half == pytest.approx(1.959964 * se)


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        compare({}, {0: 1.0}, 10)
    with pytest.raises(ValueError, match="different images"):
        compare({0: 1.0}, {0: 2.0}, 10, wrong_a=[[True] * 10], wrong_b=[[True] * 9])
