"""The funnel marts at tiny: identities, reconciliation with the labels, and the campaign plan's rule."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from merchant_growth.data import mart_path
from simulator.campaigns import campaign_of


@pytest.fixture(scope="module")
def con():
    with duckdb.connect() as c:
        yield c


def test_funnel_identities_hold_on_every_row(tiny_platform, con):
    for mart in ("mg_merchant_funnel_daily", "mg_product_funnel_daily"):
        f = con.execute(f"select * from read_parquet('{mart_path(tiny_platform, mart)}')").df()
        assert len(f) > 0
        imp, clk, orders, gmv = (f[c].to_numpy(dtype=float) for c in ("impressions", "clicks", "orders", "gmv"))
        assert (clk <= imp).all() and ((orders == 0) | (clk > 0)).all()
        np.testing.assert_allclose(f["ctr"], np.divide(clk, imp, out=np.zeros_like(imp), where=imp > 0), atol=1e-12)
        np.testing.assert_allclose(f["cvr"], np.divide(orders, clk, out=np.zeros_like(clk), where=clk > 0), atol=1e-12)
        np.testing.assert_allclose(gmv, orders * f["aov"], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gmv, imp * f["ctr"] * f["cvr"] * f["aov"], rtol=1e-9, atol=1e-9)


def test_funnel_reconciles_with_the_labels_and_products(tiny_platform, con):
    labels = mart_path(tiny_platform, "impression_labels")
    merchant = mart_path(tiny_platform, "mg_merchant_funnel_daily")
    product = mart_path(tiny_platform, "mg_product_funnel_daily")
    by_label = con.execute(
        f"select merchant_id, feature_date d, surface, count(*) i, sum(clicked) c, sum(order_gmv) g "
        f"from read_parquet('{labels}') group by all"
    ).df()
    by_funnel = con.execute(
        f"select merchant_id, activity_date d, surface, impressions i, clicks c, gmv g "
        f"from read_parquet('{merchant}') where impressions > 0"
    ).df()
    joined = by_label.merge(by_funnel, on=["merchant_id", "d", "surface"], how="outer", suffixes=("_l", "_f"))
    assert joined[["i_l", "i_f"]].notna().all().all(), "a merchant-day-surface is in only one of the two"
    assert (joined["i_l"] == joined["i_f"]).all() and (joined["c_l"] == joined["c_f"]).all()
    np.testing.assert_allclose(joined["g_l"], joined["g_f"], atol=1e-6)
    totals = con.execute(
        f"select (select sum(gmv) from read_parquet('{merchant}')) m, "
        f"(select sum(gmv) from read_parquet('{product}')) p"
    ).fetchone()
    assert totals[0] == pytest.approx(totals[1], abs=1e-6)


def test_campaign_plan_rule_matches_the_landed_calendar(tiny_platform, con):
    plan = con.execute(f"select * from read_parquet('{mart_path(tiny_platform, 'mg_campaign_plan')}')").df()
    plan["plan_date"] = pd.to_datetime(plan["plan_date"]).dt.date
    for row in plan.itertuples():
        rule = campaign_of(row.plan_date)
        assert row.is_campaign_day == int(rule is not None), row
        assert row.is_mega_sale == int(bool(rule and rule[1])), row
    assert plan["is_landed_calendar"].sum() == 21  # the tiny period


def test_forecast_features_are_dense_and_point_in_time(tiny_platform, con):
    f = con.execute(f"select * from read_parquet('{mart_path(tiny_platform, 'mg_merchant_forecast_features')}')").df()
    assert (
        f["event_timestamp"] == pd.to_datetime(f["feature_date"]).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    ).all()
    per_merchant = f.groupby("merchant_id")["feature_date"].agg(["min", "max", "count"])
    span = (pd.to_datetime(per_merchant["max"]) - pd.to_datetime(per_merchant["min"])).dt.days + 1
    assert (span == per_merchant["count"]).all()
