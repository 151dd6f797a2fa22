"""Data quality at the door (serving/monitoring/data_quality.py) on a hand-made landing zone of eight days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from serving.monitoring import data_quality as dq
from serving.monitoring.alerts import Window
from serving.monitoring.config import DataQuality

END = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=1), END)
SURFACES = ["home_feed", "search", "short_video", "live_stream"]
TH = DataQuality()


def land(raw: Path, table: str, frame: pd.DataFrame) -> None:
    for column in frame.columns:  # as the simulator lands them: microseconds
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].astype("datetime64[us, UTC]")
    for day, part in frame.groupby(frame["_ingested_at"].dt.date):
        folder = raw / table / f"dt={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        part.to_parquet(folder / "part-0.parquet", index=False)


def world(
    raw: Path,
    surface_factor: float = 1.0,
    late_hours: float = 0.0,
    price_factor: float = 1.0,
) -> None:
    """8 days, 400 impressions a day spread over the surfaces and the day, 80 clicks, 50 products a day."""
    rng = np.random.default_rng(7)
    imps, clicks, prices = [], [], []
    for d in range(8):
        day = END - timedelta(days=8 - d)
        last = d == 7
        for s in SURFACES:
            n = int(100 * (surface_factor if last and s == "search" else 1.0))
            ts = pd.Series([day + timedelta(seconds=int(x)) for x in np.sort(rng.uniform(0, 86_000, n))])
            ingested = ts + pd.Timedelta(hours=late_hours if last else 0)
            imps.append(
                pd.DataFrame(
                    {
                        "impression_id": [f"{d}{s}{i}" for i in range(n)],
                        "surface": s,
                        "event_ts": ts,
                        "_ingested_at": ingested,
                    }
                )
            )
        ts = pd.Series([day + timedelta(hours=23, minutes=59)] * 80)
        clicks.append(
            pd.DataFrame(
                {
                    "click_id": range(80),
                    "event_ts": ts,
                    "_ingested_at": ts + pd.Timedelta(hours=late_hours if last else 0),
                }
            )
        )
        price = np.where(np.arange(50) < 25, 10.0, 100.0) * (price_factor if last else 1.0)
        price[25:] = 100.0  # the shock only hits category "toys" (the first 25 products)
        prices.append(
            pd.DataFrame(
                {
                    "product_id": [f"p{i}" for i in range(50)],
                    "price": price,
                    "_ingested_at": [day + timedelta(minutes=30)] * 50,
                }
            )
        )
    land(raw, "impressions", pd.concat(imps))
    land(raw, "clicks", pd.concat(clicks))
    land(raw, "product_prices", pd.concat(prices))
    land(raw, "merchant_daily", pd.DataFrame({"_ingested_at": [END - timedelta(minutes=5)]}))
    land(
        raw,
        "products",
        pd.DataFrame(
            {
                "product_id": [f"p{i}" for i in range(50)],
                "category_l1": ["toys"] * 25 + ["beauty"] * 25,
                "_ingested_at": [END + timedelta(hours=1)] * 50,
            }
        ),
    )


def freshness(lags_hours: dict[str, float]) -> dict:
    """A sources.json as `dbt source freshness` writes it, for tables with these lags at the window end."""
    stream = {"warn_after": {"count": 6, "period": "hour"}, "error_after": {"count": 12, "period": "hour"}}
    results = []
    for table, lag in lags_hours.items():
        status = "error" if lag > 12 else "warn" if lag > 6 else "pass"
        results.append(
            {
                "unique_id": f"source.shoprank.raw.{table}",
                "max_loaded_at_time_ago_in_s": lag * 3600,
                "status": status,
                "criteria": stream,
            }
        )
    return {"results": results}


FRESH = (freshness({"impressions": 0.5, "clicks": 0.5}), "hand-made sources.json")


def alerts(raw: Path, warehouse: Path | None = None) -> list[tuple[str, str]]:
    result = dq.run(raw, warehouse or raw / "none.duckdb", WINDOW, TH, FRESH)
    return [(a.check, a.target) for a in result.alerts]


def test_a_clean_landing_zone_fires_nothing(tmp_path: Path) -> None:
    world(tmp_path)
    assert alerts(tmp_path) == []


def test_a_traffic_drop_on_one_surface_is_named(tmp_path: Path) -> None:
    world(tmp_path, surface_factor=0.2)
    assert alerts(tmp_path) == [("data_quality.row_count", "impressions[surface=search]")]


def test_a_late_batch_is_named_by_counts(tmp_path: Path) -> None:
    world(tmp_path, late_hours=30)  # the window's rows land the day after: not there when the window closes
    assert ("data_quality.row_count", "impressions") in alerts(tmp_path)


def test_landing_freshness_reads_dbts_verdict() -> None:
    """dbt's status decides (warn alerts by default, `landing_freshness_alert: error` waits for error_after); the
    real `dbt source freshness` on a hand-made landing zone is tests/transforms/test_source_freshness.py."""
    payload = freshness({"impressions": 30.0, "clicks": 8.0, "product_prices": 1.0})
    result = dq.landing_freshness(payload, "x", WINDOW, TH)
    assert [(a.target, a.measured, a.threshold) for a in result.alerts] == [
        ("impressions", 30.0, 6.0),
        ("clicks", 8.0, 6.0),
    ]
    assert [m.detail["dbt_status"] for m in result.measurements] == ["error", "warn", "pass"]
    strict = dq.landing_freshness(payload, "x", WINDOW, TH.model_copy(update={"landing_freshness_alert": "error"}))
    assert [(a.target, a.threshold) for a in strict.alerts] == [("impressions", 12.0)]
    broken = dq.landing_freshness(
        {"results": [{"unique_id": "source.shoprank.raw.orders", "status": "runtime error", "error": "no files"}]},
        "x",
        WINDOW,
        TH,
    )
    assert [a.target for a in broken.alerts] == ["orders"]
    # dbt did not run at all: an alert that says so, not a silent pass
    missing = dq.landing_freshness(None, "dbt source freshness wrote no sources.json: boom", WINDOW, TH)
    assert [(a.target, a.message) for a in missing.alerts] == [
        ("dbt", "dbt source freshness wrote no sources.json: boom")
    ]


@pytest.mark.parametrize("factor", [1.6, 0.6])
def test_a_price_shock_in_one_category_is_named(tmp_path: Path, factor: float) -> None:
    world(tmp_path, price_factor=factor)
    assert alerts(tmp_path) == [("data_quality.category_price", "product_prices[category=toys]")]


def test_the_quarantine_share_per_reason(tmp_path: Path) -> None:
    world(tmp_path)
    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    rows = [("impressions", "duplicate", END - timedelta(minutes=m)) for m in range(1, 41)]  # 40 of 400: 10%
    rows += [("impressions", "null_user_id", END - timedelta(hours=2))]  # 1 of 400
    rows += [("impressions", "duplicate", END - timedelta(days=3))] * 3  # an older day: not in the window
    con.execute("create table quarantine_events (source_table varchar, reason varchar, _ingested_at timestamptz)")
    con.executemany("insert into quarantine_events values (?, ?, ?)", rows)
    con.close()
    result = dq.run(tmp_path, warehouse, WINDOW, TH, FRESH)
    assert [(a.check, a.target, a.measured) for a in result.alerts] == [
        ("data_quality.quarantine_share", "impressions[reason=duplicate]", 0.1)
    ]


def test_a_warehouse_without_the_quarantine_table_is_a_note(tmp_path: Path) -> None:
    """`dbt source freshness` opens (creates) the warehouse file; before `make features` it has no tables."""
    world(tmp_path)
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    result = dq.run(tmp_path, tmp_path / "empty.duckdb", WINDOW, TH, FRESH)
    assert result.alerts == [] and any("no quarantine_events" in n for n in result.notes)
