"""The GMV decomposition is exact: traffic + CTR + CVR + AOV parts add up to the change, in every case."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from merchant_growth.decomposition import (
    FunnelCounts,
    decompose,
    decompose_segments,
    float_residual,
    shapley_product,
)


def random_counts(rng: np.random.Generator, days: int) -> FunnelCounts:
    """Random but consistent funnel counts, zeros included (no impressions, no clicks, no orders)."""
    impressions = int(rng.choice([0, rng.integers(1, 50), rng.integers(50, 100_000)]))
    clicks = int(rng.integers(0, impressions + 1)) if impressions and rng.random() > 0.1 else 0
    orders = int(rng.integers(0, clicks * 2 + 1)) if clicks and rng.random() > 0.2 else 0
    gmv = float(np.round(orders * rng.lognormal(2.5, 1.0), 2)) if orders else 0.0
    return FunnelCounts(impressions, clicks, orders, gmv, days)


@pytest.mark.parametrize("seed", range(8))
def test_parts_add_up_exactly_to_the_change(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        days_a, days_b = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        a, b = random_counts(rng, days_a), random_counts(rng, days_b)
        change = decompose(a, b)
        assert sum(change.parts) == change.delta  # exact, rational
        assert change.gmv_per_day_a == a.gmv / days_a
        assert change.gmv_per_day_b == b.gmv / days_b
        # floats: each part rounded once, so the float sum is off by rounding only
        assert abs(float_residual(change)) <= 1e-9 * max(1.0, abs(float(change.delta)))
        c = change.contributions()
        assert math.isclose(c.total(), float(change.delta), rel_tol=1e-12, abs_tol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_segments_add_up_to_the_merchant_total(seed):
    rng = np.random.default_rng(100 + seed)
    days_a, days_b = 7, int(rng.integers(1, 15))
    segs = ["home_feed", "short_video", "live_stream", "search"]
    a = {s: random_counts(rng, days_a) for s in segs if rng.random() > 0.2}
    b = {s: random_counts(rng, days_b) for s in segs if rng.random() > 0.2}
    changes = decompose_segments(a, b, days_a, days_b)
    total_a = sum(a.values(), FunnelCounts.zero(days_a))
    total_b = sum(b.values(), FunnelCounts.zero(days_b))
    merchant = decompose(total_a, total_b)
    assert sum(ch.delta for ch in changes.values()) == merchant.delta
    assert sum(sum(ch.parts) for ch in changes.values()) == merchant.delta


def test_shapley_of_a_product_is_exact_and_antisymmetric():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(1, 6))
        a = [Fraction(int(x), int(y)) for x, y in zip(rng.integers(0, 100, n), rng.integers(1, 9, n), strict=True)]
        b = [Fraction(int(x), int(y)) for x, y in zip(rng.integers(0, 100, n), rng.integers(1, 9, n), strict=True)]
        parts = shapley_product(a, b)
        assert sum(parts) == math.prod(b) - math.prod(a)
        assert shapley_product(b, a) == [-p for p in parts]


def test_known_two_factor_case_and_unchanged_factors_get_nothing():
    # traffic doubles, CTR halves, the rest unchanged: GMV unchanged, traffic and CTR cancel
    a = FunnelCounts(1000, 100, 10, 200.0, 7)
    b = FunnelCounts(2000, 100, 10, 200.0, 7)
    change = decompose(a, b)
    traffic, ctr, cvr, aov = change.parts
    assert change.delta == 0 and cvr == 0 and aov == 0 and traffic == -ctr > 0
    # only the order value moves: all of the change is AOV
    change = decompose(FunnelCounts(1000, 100, 10, 200.0, 7), FunnelCounts(1000, 100, 10, 300.0, 7))
    assert change.parts[:3] == (0, 0, 0) and change.parts[3] == change.delta == Fraction(100, 7)


def test_undefined_ratios_take_no_credit():
    # no orders in a: AOV of a is undefined and takes b's value, so all the gain goes to CVR (and not AOV)
    change = decompose(FunnelCounts(1000, 50, 0, 0.0, 7), FunnelCounts(1000, 50, 5, 80.0, 7))
    assert change.parts == (0, 0, Fraction(80, 7), 0)
    # no traffic in b: everything is lost to traffic
    change = decompose(FunnelCounts(1000, 50, 5, 80.0, 7), FunnelCounts(0, 0, 0, 0.0, 7))
    assert change.parts == (Fraction(-80, 7), 0, 0, 0)
    # nothing in either period
    assert decompose(FunnelCounts.zero(7), FunnelCounts.zero(3)).parts == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "counts",
    [
        dict(impressions=1, clicks=2, orders=0, gmv=0.0, days=1),  # more clicks than impressions
        dict(impressions=5, clicks=0, orders=1, gmv=3.0, days=1),  # orders without clicks
        dict(impressions=5, clicks=1, orders=0, gmv=3.0, days=1),  # GMV without orders
        dict(impressions=5, clicks=1, orders=1, gmv=-3.0, days=1),  # negative GMV
        dict(impressions=5, clicks=1, orders=1, gmv=3.0, days=0),  # no days
        dict(impressions=5, clicks=1, orders=1, gmv=float("nan"), days=1),
    ],
)
def test_inconsistent_counts_are_refused(counts):
    with pytest.raises(ValueError):
        FunnelCounts(**counts)
