"""Intervals of the decomposition and the decision rule, on small hand-made frames (no platform)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from merchant_growth.decomposition import FunnelCounts, decompose, shapley_product
from merchant_growth.diagnosis_gate import gate_findings
from merchant_growth.schemas import Contributions, Decomposition, Finding, Interval, PartIntervals
from merchant_growth.uncertainty import (
    DayBootstrap,
    conversion_vs_market,
    day_matrix,
    decompose_replicates,
    mean_shift,
    shapley4,
)


def test_float_shapley_matches_the_exact_one():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 5, (50, 4)), rng.uniform(0, 5, (50, 4))
    fast = shapley4(a, b)
    for i in range(50):
        exact = shapley_product([Fraction(x) for x in a[i]], [Fraction(x) for x in b[i]])
        assert fast[i] == pytest.approx([float(x) for x in exact], rel=1e-12, abs=1e-12)
    assert fast.sum(axis=1) == pytest.approx(b.prod(axis=1) - a.prod(axis=1))


def test_replicate_without_resampling_is_the_exact_decomposition():
    # zeros included: no orders in a (AOV undefined there), no clicks in b
    for ca, cb in [((1000, 40, 0, 0.0), (1200, 30, 3, 45.0)), ((500, 20, 2, 19.5), (400, 0, 0, 0.0))]:
        counts_a, counts_b = np.array([ca], dtype=float), np.array([cb], dtype=float)
        reps = decompose_replicates(counts_a, counts_b, 7, 5)
        exact = decompose(FunnelCounts(*ca[:3], ca[3], 7), FunnelCounts(*cb[:3], cb[3], 5))  # type: ignore[arg-type]
        assert reps[0, :4] == pytest.approx([float(p) for p in exact.parts], abs=1e-12)
        assert reps[0, 4] == pytest.approx(float(exact.delta))


def daily_funnel(rng: np.random.Generator, days: int, imp: float, ctr: float, cvr: float, aov: float) -> np.ndarray:
    impressions = rng.poisson(imp, days)
    clicks = rng.binomial(impressions, ctr)
    orders = rng.binomial(clicks, cvr)
    return np.column_stack([impressions, clicks, orders, orders * aov]).astype(float)


def test_bootstrap_is_deterministic_and_covers_the_point_estimate():
    rng = np.random.default_rng(1)
    a, b = daily_funnel(rng, 7, 20_000, 0.03, 0.05, 12.0), daily_funnel(rng, 7, 20_000, 0.03, 0.05, 12.0)
    one, two = DayBootstrap(7, 7, seed=5).intervals(a, b), DayBootstrap(7, 7, seed=5).intervals(a, b)
    assert one == two
    point = decompose_replicates(a.sum(axis=0, keepdims=True), b.sum(axis=0, keepdims=True), 7, 7)[0]
    for i, name in enumerate(("traffic", "ctr", "cvr", "aov")):
        interval = getattr(one, name)
        assert interval.low <= point[i] <= interval.high, name
    assert one.delta.low <= point[4] <= one.delta.high


def test_a_real_conversion_drop_is_told_from_noise_and_no_change_mostly_is_not():
    rng = np.random.default_rng(2)
    boot = DayBootstrap(7, 7, seed=3)
    drop = boot.intervals(
        daily_funnel(rng, 7, 30_000, 0.03, 0.05, 10.0), daily_funnel(rng, 7, 30_000, 0.03, 0.03, 10.0)
    )
    assert drop.cvr.high < 0 and drop.conversion.high < 0 and "cvr" in drop.distinguishable()
    assert not drop.traffic.excludes_zero()
    # 200 merchants whose funnel did not change: the CVR part's interval rarely excludes 0
    false = sum(
        boot.intervals(
            daily_funnel(rng, 7, 3_000, 0.03, 0.05, 10.0), daily_funnel(rng, 7, 3_000, 0.03, 0.05, 10.0)
        ).cvr.excludes_zero()
        for _ in range(200)
    )
    assert false <= 30, false  # 95% intervals from 7 days are a little narrow; never most of them


def test_day_matrix_fills_missing_days_with_zeros():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(3)]
    rows = pd.DataFrame(
        {
            "activity_date": [days[0], days[0], days[2]],
            "impressions": [10, 5, 7],
            "clicks": [1, 0, 2],
            "orders": [1, 0, 0],
            "gmv": [9.5, 0.0, 0.0],
        }
    )
    assert day_matrix(rows, days).tolist() == [[15, 1, 1, 9.5], [0, 0, 0, 0], [7, 2, 0, 0]]
    assert day_matrix(rows.iloc[:0], days).shape == (3, 4)


def test_conversion_vs_market_holds_the_product_mix_fixed():
    # two cells: a cheap product converting at 2%, a dear one at 0.2%; in b traffic moves to the cheap one
    rng = np.random.default_rng(4)
    imp = np.vstack([np.tile([20_000, 20_000], (7, 1)), np.tile([36_000, 4_000], (7, 1))]).astype(float)
    orders = rng.binomial(imp.astype(int), [0.02, 0.002]).astype(float)
    market = np.tile([1_000.0, 200_000.0], (14, 1))
    per_day = conversion_vs_market(imp, orders, market, 7)
    boot = DayBootstrap(7, 7, seed=9)
    assert not mean_shift(boot, per_day[:7], per_day[7:]).excludes_zero()
    # raw orders per impression rose ~1.6x: a mix effect the standardised ratio does not report
    assert orders[7:].sum() / imp[7:].sum() > 1.5 * orders[:7].sum() / imp[:7].sum()
    # a real 40% drop in every cell, and a market that did not move, is reported
    orders_drop = np.vstack([orders[:7], rng.binomial(imp[7:].astype(int), [0.012, 0.0012])]).astype(float)
    shift = mean_shift(boot, *np.split(conversion_vs_market(imp, orders_drop, market, 7), [7]))
    assert shift.high < 0 and shift.low > -1.0
    # the same drop shared by the whole market (a campaign ending) is not the merchant's own
    market_drop = np.vstack([market[:7], market[7:] * [0.6, 1.0]])
    shared = mean_shift(boot, *np.split(conversion_vs_market(imp, orders_drop, market_drop, 7), [7]))
    assert not shared.excludes_zero()


def intervals(delta: Interval, conversion: Interval | None = None) -> PartIntervals:
    wide = Interval(low=-1.0, high=1.0)
    return PartIntervals(
        level=0.95, traffic=wide, ctr=wide, cvr=wide, aov=wide, conversion=conversion or wide, delta=delta
    )


def decomposition(delta: Interval) -> Decomposition:
    zero = Contributions(traffic=0.0, ctr=0.0, cvr=0.0, aov=0.0)
    return Decomposition(
        gmv_per_day_a=1.0,
        gmv_per_day_b=1.0,
        delta=0.0,
        relative_change=0.0,
        contributions=zero,
        residual=0.0,
        by_surface=[],
        by_product=[],
        intervals=intervals(delta),
    )


def finding(cause: str, kind: str = "merchant", strength: float = 2.0) -> Finding:
    return Finding(cause=cause, kind=kind, strength=strength, summary=cause, evidence=[])  # type: ignore[arg-type]


DOWN, UP, NOISE = Interval(low=-0.5, high=-0.1), Interval(low=0.1, high=0.5), Interval(low=-0.2, high=0.3)


@pytest.mark.parametrize(
    ("findings", "channels", "delta", "primary"),
    [
        # the lever moved and its part moved the predicted way beyond noise: named
        ([finding("price_increase")], {"ctr": DOWN, "cvr": NOISE}, DOWN, "price_increase"),
        ([finding("rating_drop")], {"ctr": NOISE, "cvr": DOWN}, NOISE, "rating_drop"),
        ([finding("started_live")], {"live_stream traffic": UP}, NOISE, "started_live"),
        # the lever moved but its part is within noise, or moved the other way: nothing named
        ([finding("price_increase")], {"ctr": NOISE, "cvr": NOISE}, DOWN, "within_noise"),
        ([finding("rating_drop")], {"ctr": NOISE, "cvr": UP}, UP, "within_noise"),
        ([finding("discount_up")], {"ctr": UP, "cvr": DOWN}, UP, "within_noise"),  # the looks disagree
        # the strongest finding is not supported, a weaker one is: the weaker one is named
        (
            [finding("rating_drop", strength=3.0), finding("started_live", strength=1.5)],
            {"ctr": NOISE, "cvr": NOISE, "live_stream traffic": UP},
            UP,
            "started_live",
        ),
        # no lever moved: market context when GMV moved beyond noise, else within noise
        ([finding("campaign_calendar", "market")], {}, UP, "campaign_calendar"),
        ([finding("campaign_calendar", "market")], {}, NOISE, "within_noise"),
        ([], {}, UP, "no_clear_cause"),
        ([], {}, NOISE, "within_noise"),
    ],
)
def test_decision_rule(findings, channels, delta, primary):
    marked, named = gate_findings(findings, decomposition(delta), channels)
    assert named == primary
    for f in marked:
        if f.kind == "merchant":
            assert f.funnel_channel in {"conversion", "live_stream traffic"}
            assert f.distinguishable_from_noise == (f.cause == primary)
