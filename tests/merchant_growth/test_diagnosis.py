"""Diagnostics at tiny: the planted causes are named, the parts add up, bad input is refused."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import pytest

from merchant_growth import InvalidPeriodError, UnknownMerchantError, diagnose
from merchant_growth.data import data_bounds


@pytest.fixture(scope="module")
def planted(tiny_platform):
    return json.loads((tiny_platform.oracle_dir / "planted_causes.json").read_text())


def periods_around(change: date, end: date) -> tuple[tuple[date, date], tuple[date, date]]:
    return (change - timedelta(days=7), change - timedelta(days=1)), (change, min(end, change + timedelta(days=6)))


def test_every_planted_cause_is_found_and_named_when_beyond_noise(tiny_platform, planted):
    _, end = data_bounds(tiny_platform)
    assert len(planted) == 3
    named = 0
    for plant in planted:
        a, b = periods_around(date.fromisoformat(plant["change_date"]), end)
        report = diagnose(plant["merchant_id"], a, b, tiny_platform, explain_with_model=False)
        assert report.funnel_source == "panel"
        # the lever rule always finds the planted cause, and it is the strongest merchant finding
        top = next(f for f in report.findings if f.kind == "merchant")
        assert top.cause == plant["cause"] and top.strength >= 1, (plant, report.findings)
        # it is named only when its funnel part moved beyond noise; otherwise the diagnosis says so
        assert top.distinguishable_from_noise is not None and top.channel_vs_peers is not None
        if top.distinguishable_from_noise:
            assert report.primary_cause == plant["cause"]
            named += 1
        else:
            assert report.primary_cause == "within_noise" and "within noise" in report.summary
        # non-zero funnels, every part with an interval
        assert report.funnel_a.orders > 50 and report.funnel_b.orders > 0
        intervals = report.decomposition.intervals
        assert intervals is not None and intervals.level == 0.95
        for part in ("traffic", "ctr", "cvr", "aov"):
            interval = getattr(intervals, part)
            assert interval.low <= interval.high
        assert all(s.intervals is not None for s in report.decomposition.by_surface + report.decomposition.by_product)
    assert named >= 2, "the panels give the planted merchants enough orders for most causes to be told from noise"


def test_decomposition_adds_up_on_real_data(tiny_platform, planted):
    _, end = data_bounds(tiny_platform)
    plant = next(p for p in planted if p["cause"] == "started_live")  # the merchant whose GMV moves most
    a, b = periods_around(date.fromisoformat(plant["change_date"]), end)
    report = diagnose(plant["merchant_id"], a, b, tiny_platform, top_products=2, explain_with_model=True)
    dec = report.decomposition
    assert math.isclose(dec.contributions.total(), dec.delta, rel_tol=1e-12, abs_tol=1e-12)
    assert abs(dec.residual) < 1e-12
    assert math.isclose(sum(s.delta for s in dec.by_surface), dec.delta, abs_tol=1e-9)
    assert math.isclose(sum(p.delta for p in dec.by_product), dec.delta, abs_tol=1e-9)
    assert len(dec.by_product) <= 3 and [s.segment for s in dec.by_surface][2] == "live_stream"
    assert report.funnel_b.gmv_per_day == pytest.approx(dec.gmv_per_day_b)
    # started live: its live_stream traffic grew
    live = dec.by_surface[2]
    assert live.funnel_b.impressions_per_day > live.funnel_a.impressions_per_day
    # the model explanation: SHAP group gaps add up to the gap of the mean log-odds
    assert report.model_explanations, report.notes
    for ex in report.model_explanations:
        assert ex.head in {"ctr", "cvr"} and ex.rows_merchant > 0 and ex.rows_reference > 0
        groups = {g.group for g in ex.groups}
        assert groups <= {
            "price",
            "discount",
            "rating",
            "live",
            "product_quality",
            "user_mix",
            "context",
            "other",
            "bias",
        }
        if ex.head == "ctr":  # at tiny the rare-event CVR head may have no split at all, hence no groups
            assert "price" in groups and "user_mix" in groups
        assert ex.summary.startswith("The ranking model's")


def test_default_periods_are_the_last_two_weeks(tiny_platform, planted):
    _, end = data_bounds(tiny_platform)
    report = diagnose(planted[0]["merchant_id"], settings=tiny_platform, explain_with_model=False)
    assert report.period_b.end == end and report.period_b.days == 7
    assert report.period_a.end == report.period_b.start - timedelta(days=1) and report.period_a.days == 7
    only_b = diagnose(
        planted[0]["merchant_id"], None, (end - timedelta(days=1), end), tiny_platform, explain_with_model=False
    )
    assert only_b.period_a.days == 2 and only_b.period_a.end == end - timedelta(days=2)


def test_unknown_merchant_and_periods_outside_the_data(tiny_platform, planted):
    start, end = data_bounds(tiny_platform)
    with pytest.raises(UnknownMerchantError) as err:
        diagnose("m99999", settings=tiny_platform, explain_with_model=False)
    assert "m99999" in str(err.value)
    with pytest.raises(InvalidPeriodError, match="outside the data"):
        diagnose(
            planted[0]["merchant_id"],
            (start - timedelta(days=10), start - timedelta(days=4)),
            (end, end),
            tiny_platform,
            explain_with_model=False,
        )
    with pytest.raises(InvalidPeriodError, match="no data before"):
        diagnose(planted[0]["merchant_id"], None, (start, start + timedelta(days=2)), tiny_platform)
    with pytest.raises(ValueError, match="must end before"):
        diagnose(planted[0]["merchant_id"], (end, end), (start, start), tiny_platform)
