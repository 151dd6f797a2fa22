"""Planted merchant causes are recorded in the oracle and visible in raw data after their change date."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from tests.simulator.conftest import END_DATE, Run


def planted(run: Run) -> list[dict]:
    return json.loads((run.oracle / "planted_causes.json").read_text())


def before_after(df: pd.DataFrame, date_column: str, change: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    return df[df[date_column] < change], df[df[date_column] >= change]


def test_one_merchant_per_cause_in_the_second_half(tiny: Run) -> None:
    causes = planted(tiny)
    assert sorted(c["cause"] for c in causes) == ["price_increase", "rating_drop", "started_live"]
    assert len({c["merchant_id"] for c in causes}) == 3
    start = END_DATE - timedelta(days=tiny.config.spec.n_days)
    midpoint = start + timedelta(days=tiny.config.spec.n_days // 2)
    merchants = tiny.table("merchants").set_index("merchant_id")
    for cause in causes:
        assert set(cause) == {"merchant_id", "cause", "change_date", "magnitude"}
        assert midpoint <= date.fromisoformat(cause["change_date"]) < END_DATE
        # established merchants only: the change needs a baseline before it
        assert merchants.loc[cause["merchant_id"], "joined_ts"].date() < start


def test_price_increase_shows_in_daily_prices(tiny: Run) -> None:
    cause = next(c for c in planted(tiny) if c["cause"] == "price_increase")
    change = date.fromisoformat(cause["change_date"])
    products = tiny.table("products")[["product_id", "merchant_id"]]
    prices = tiny.table("product_prices").merge(products, on="product_id")
    # list price = shown price / (1 - discount): promotions would otherwise blur the step
    prices["list_price"] = prices["price"] / (1 - prices["discount_pct"])

    def ratio(rows: pd.DataFrame) -> float:
        before, after = before_after(rows, "price_date", change)
        per_product = (
            after.groupby("product_id")["list_price"].median() / before.groupby("product_id")["list_price"].median()
        )
        return float(per_product.median())

    target = ratio(prices[prices["merchant_id"] == cause["merchant_id"]])
    others = ratio(prices[prices["merchant_id"] != cause["merchant_id"]])
    assert 1.15 < target < 1.40, target
    assert target == pytest.approx(1 + cause["magnitude"], abs=0.06)
    assert 0.97 < others < 1.03, others


def test_rating_drop_shows_in_merchant_daily(tiny: Run) -> None:
    cause = next(c for c in planted(tiny) if c["cause"] == "rating_drop")
    change = date.fromisoformat(cause["change_date"])
    daily = tiny.table("merchant_daily")
    before, after = before_after(daily[daily["merchant_id"] == cause["merchant_id"]], "snapshot_date", change)
    drop = before["rating"].mean() - after["rating"].mean()
    assert 0.6 < drop < 1.5, drop
    assert drop == pytest.approx(cause["magnitude"], abs=0.25)


def test_started_live_shows_in_merchant_daily_and_traffic(tiny: Run) -> None:
    cause = next(c for c in planted(tiny) if c["cause"] == "started_live")
    change = date.fromisoformat(cause["change_date"])
    daily = tiny.table("merchant_daily")
    before, after = before_after(daily[daily["merchant_id"] == cause["merchant_id"]], "snapshot_date", change)
    assert not before["is_live"].any() and after["is_live"].all()
    products = tiny.table("products")
    own = set(products.loc[products["merchant_id"] == cause["merchant_id"], "product_id"])
    impressions = tiny.table("impressions").dropna(subset=["event_ts", "product_id"])
    live = impressions[(impressions["surface"] == "live_stream") & impressions["product_id"].isin(own)]
    live_before, live_after = before_after(live.assign(day=live["event_ts"].dt.date), "day", change)
    days_before = (change - (END_DATE - timedelta(days=tiny.config.spec.n_days))).days
    days_after = (END_DATE - change).days
    assert len(live_after) / days_after > 3 * max(len(live_before), 1) / days_before
