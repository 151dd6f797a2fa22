"""The merchant funnel panels: drawn from the same world, a heavy head, planted merchants with enough orders."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from simulator.merchant_panel import PANEL_DIR, PANEL_FILE
from tests.simulator.conftest import Run, simulate


@pytest.fixture(scope="module")
def panel(tiny: Run) -> pd.DataFrame:
    return pq.read_table(tiny.home / PANEL_DIR / PANEL_FILE).to_pandas()


def test_panel_rows_are_a_funnel(tiny: Run, panel: pd.DataFrame) -> None:
    assert list(panel.columns) == [
        "product_id",
        "merchant_id",
        "category_l1",
        "main_category_l1",
        "activity_date",
        "surface",
        "impressions",
        "clicks",
        "orders",
        "gmv",
    ]
    assert not panel.duplicated(["product_id", "activity_date", "surface"]).any()
    assert (panel["impressions"] > 0).all()
    assert (panel["clicks"] <= panel["impressions"]).all() and (panel["orders"] <= panel["clicks"]).all()
    assert ((panel["gmv"] > 0) == (panel["orders"] > 0)).all()
    # the same catalogue as the events: every product and merchant id exists in raw, with the same merchant
    products = tiny.table("products").set_index("product_id")
    assert set(panel["product_id"]) <= set(products.index)
    assert (products.loc[panel["product_id"], "merchant_id"].to_numpy() == panel["merchant_id"].to_numpy()).all()
    days = pd.to_datetime(panel["activity_date"]).dt.date
    start = tiny.config.start_date
    assert days.min() >= start and days.max() < tiny.config.end_date
    # units: at least one per order, at most three, at the day's shown price
    prices = tiny.table("product_prices").set_index(["product_id", "price_date"])["price"]
    sold = panel[panel["orders"] > 0]
    unit = prices.loc[list(zip(sold["product_id"], pd.to_datetime(sold["activity_date"]).dt.date, strict=True))]
    units = sold["gmv"].to_numpy() / unit.to_numpy()
    assert (units >= sold["orders"].to_numpy() - 1e-6).all() and (units <= 3 * sold["orders"].to_numpy() + 1e-6).all()


def test_a_heavy_head_and_enough_orders_for_planted_merchants(tiny: Run, panel: pd.DataFrame) -> None:
    gmv = panel.groupby("merchant_id")["gmv"].sum().sort_values(ascending=False)
    n = tiny.config.spec.n_merchants
    top10 = gmv.iloc[: n // 10].sum() / gmv.sum()
    assert top10 > 0.5, top10  # a tenth of the merchants carries most GMV
    meta = json.loads((tiny.home / PANEL_DIR / "panel.json").read_text())
    assert meta["top_10pct_gmv_share"] == pytest.approx(top10)
    # and the volume is what the merchant side needs: hundreds of orders a day, not a handful
    assert panel["orders"].sum() / tiny.config.spec.n_days > 100
    planted = json.loads((tiny.oracle / "planted_causes.json").read_text())
    for plant in planted:
        change = date.fromisoformat(plant["change_date"])
        own = panel[panel["merchant_id"] == plant["merchant_id"]]
        days = pd.to_datetime(own["activity_date"]).dt.date
        before = own[(days >= change - timedelta(days=7)) & (days < change)]["orders"].sum()
        after = own[(days >= change) & (days < change + timedelta(days=7))]["orders"].sum()
        assert before >= 100 and after >= 30, (plant, before, after)


def test_planted_causes_move_the_panel_funnel(tiny: Run, panel: pd.DataFrame) -> None:
    planted = {p["cause"]: p for p in json.loads((tiny.oracle / "planted_causes.json").read_text())}
    plant = planted["started_live"]
    change = date.fromisoformat(plant["change_date"])
    live = panel[(panel["merchant_id"] == plant["merchant_id"]) & (panel["surface"] == "live_stream")]
    days = pd.to_datetime(live["activity_date"]).dt.date
    per_day_before = live[days < change]["impressions"].sum() / max(1, (change - tiny.config.start_date).days)
    per_day_after = live[days >= change]["impressions"].sum() / (tiny.config.end_date - change).days
    assert per_day_after > 3 * per_day_before


def test_the_panel_leaves_the_event_data_byte_identical(
    tiny: Run, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranking models, the point-in-time and realism tests read raw/ and oracle/: drawing the panels must not
    move a byte of them (its own random streams, drawn after the event data is written)."""
    import hashlib

    import simulator.run

    monkeypatch.setattr(simulator.run, "write_panel", lambda *args: {})
    home = tmp_path_factory.mktemp("tiny-without-panel")
    monkeypatch.setenv("SHOPRANK_HOME", str(home))
    without = simulate(home)
    assert not (home / PANEL_DIR).exists()

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("raw", "oracle")
            for p in sorted((root / folder).rglob("*"))
            if p.is_file()
        }

    assert digests(without.home) == digests(tiny.home)
