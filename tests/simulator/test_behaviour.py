"""Behaviour hits the realism targets and carries learnable signal (tiny, plus one check at small)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from simulator.run import roc_auc
from tests.simulator.conftest import Run, simulate


def clean_labels(run: Run) -> pd.DataFrame:
    """One row per landed impression with its realised click and order, from raw data alone."""
    raw = f"{run.raw}/{{}}/*/*.parquet"
    query = f"""
        select i.*, t.p_click, t.p_order_given_click, t.expected_order_value,
            i.impression_id in (select impression_id from read_parquet('{raw.format("clicks")}')) as clicked,
            i.impression_id in (select impression_id from read_parquet('{raw.format("orders")}')) as converted
        from (select distinct * from read_parquet('{raw.format("impressions")}')) i
        join read_parquet('{run.oracle}/impression_truth.parquet') t using (impression_id)
        order by i.impression_id
    """
    with duckdb.connect() as con:
        labels = con.sql(query).df()
    assert labels["impression_id"].is_unique
    return labels


def check_targets(run: Run) -> None:
    labels = clean_labels(run)
    ctr = labels["clicked"].mean()
    cvr = labels["converted"].sum() / labels["clicked"].sum()
    auc = roc_auc(labels["clicked"].to_numpy(), labels["p_click"].to_numpy())
    assert 0.02 <= ctr <= 0.06, ctr
    assert 0.02 <= cvr <= 0.08, cvr
    assert 0.70 <= auc <= 0.85, auc
    # the summary reports the same numbers (it counts the clean rows, before flaws)
    assert run.summary.ctr == pytest.approx(ctr, rel=0.02)
    assert run.summary.oracle_auc == pytest.approx(auc, abs=0.01)
    # the oracle is calibrated: realised rates track the true probabilities
    assert labels["clicked"].mean() == pytest.approx(labels["p_click"].mean(), rel=0.1)


def test_roc_auc_matches_definition() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(labels, scores) == pytest.approx(expected)


def test_tiny_realism_targets(tiny: Run) -> None:
    check_targets(tiny)


def test_small_realism_targets_and_campaign_lift(tmp_path: Path) -> None:
    # 2026-10-02 .. 2026-11-30: two mega sales (10.10, 11.11) and two paydays
    run = simulate(tmp_path, scale="small", end_date=date(2026, 12, 1))
    assert 800_000 <= run.summary.rows["impressions"] <= 1_300_000
    assert len(run.summary.planted) == 12
    check_targets(run)
    labels = clean_labels(run).dropna(subset=["event_ts"])
    calendar = run.table("campaign_calendar")
    mega_days = set(calendar.loc[calendar["is_mega_sale"], "calendar_date"])
    assert mega_days == {date(2026, 10, 10), date(2026, 11, 11)}
    on_mega = labels["event_ts"].dt.date.isin(mega_days)
    mega, normal = labels[on_mega], labels[~on_mega]
    assert mega["clicked"].mean() > normal["clicked"].mean()
    mega_cvr = mega["converted"].sum() / mega["clicked"].sum()
    normal_cvr = normal["converted"].sum() / normal["clicked"].sum()
    assert mega_cvr > 1.2 * normal_cvr, (mega_cvr, normal_cvr)


def test_position_bias(tiny: Run) -> None:
    labels = clean_labels(tiny)
    feed = labels[labels["surface"].isin(["home_feed", "search"])]
    top, deep = feed[feed["position"] <= 2], feed[feed["position"] >= 10]
    assert top["clicked"].mean() > 2 * deep["clicked"].mean()
    assert top["p_click"].mean() > 2 * deep["p_click"].mean()


def test_past_clicks_predict_future_clicks(tiny: Run) -> None:
    """Taste is latent but shows in behaviour: users click again in categories they clicked before."""
    labels = clean_labels(tiny).dropna(subset=["user_id", "product_id", "event_ts"])
    products = tiny.table("products")[["product_id", "category_l1"]]
    labels = labels.merge(products, on="product_id")
    mid = labels["event_ts"].min() + (labels["event_ts"].max() - labels["event_ts"].min()) / 2
    past, future = labels[labels["event_ts"] < mid], labels[labels["event_ts"] >= mid]
    clicked_before = past[past["clicked"]].groupby(["user_id", "category_l1"]).size().rename("n").reset_index()
    future = future.merge(clicked_before, on=["user_id", "category_l1"], how="left")
    seen = future[future["n"].notna()]["clicked"].mean()
    unseen = future[future["n"].isna()]["clicked"].mean()
    assert seen > 1.3 * unseen, (seen, unseen)


def test_mega_sale_lifts_traffic_and_discounts(tiny: Run) -> None:
    labels = clean_labels(tiny).dropna(subset=["event_ts"])
    per_day = labels.groupby(labels["event_ts"].dt.date).size()
    mega = date(2026, 11, 11)
    assert per_day[mega] > 1.8 * per_day.drop(mega).median()
    prices = tiny.table("product_prices")
    on_mega = prices["price_date"] == mega
    assert prices.loc[on_mega, "discount_pct"].mean() > 2 * prices.loc[~on_mega, "discount_pct"].mean()


def test_orders_are_consistent(tiny: Run) -> None:
    orders = tiny.table("orders").drop_duplicates("order_id")
    ok = orders["quantity"].between(1, 3) & (orders["gmv"] >= 0)
    assert ok.mean() > 0.9
    clean = orders[ok]
    assert (clean["gmv"] == clean["quantity"] * clean["unit_price"]).mean() > 0.95
    prices = tiny.table("product_prices")
    assert clean["unit_price"].isin(prices["price"]).all()
    clicks = tiny.table("clicks").drop_duplicates("click_id").set_index("click_id")
    both = clean.join(clicks[["event_ts"]], on="click_id", rsuffix="_click").dropna(subset=["event_ts_click"])
    delay = both["event_ts"] - both["event_ts_click"]
    assert (delay > pd.Timedelta(0)).mean() > 0.95
    assert delay.median() < pd.Timedelta(hours=3)


def test_generative_params_are_complete(tiny: Run) -> None:
    params = json.loads((tiny.oracle / "generative_params.json").read_text())
    assert {"seed", "scale", "params", "catalog", "scale_spec"} <= set(params)
    assert {"users", "merchants", "products", "traffic", "sessions", "clicks", "orders", "landing", "plants"} == set(
        params["params"]
    )
    assert params["params"]["clicks"]["intercept"] == tiny.config.params.clicks.intercept
