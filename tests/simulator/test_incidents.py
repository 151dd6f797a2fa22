"""Planted incidents (simulator/incidents.py) rewrite exactly the rows they say, from their day on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.incidents import LATE_HOURS, PRICE_FACTOR, Incident, plant

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def land(raw: Path, table: str, frame: pd.DataFrame, day: int) -> None:
    folder = raw / table / f"dt={(DAY0 + timedelta(days=day)).date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].astype("datetime64[us, UTC]")
    frame.to_parquet(folder / "part-00000.parquet", index=False)


def world(raw: Path) -> None:
    land(raw, "products", pd.DataFrame({"product_id": ["a", "b"], "category_l1": ["toys", "beauty"]}), 2)
    for d in range(3):
        ts = DAY0 + timedelta(days=d, hours=12)
        land(
            raw,
            "product_prices",
            pd.DataFrame(
                {
                    "product_id": ["a", "b"],
                    "price_date": [(DAY0 + timedelta(days=d)).date()] * 2,
                    "price": [10.0, 20.0],
                    "discount_pct": [0.1, 0.2],
                    "_ingested_at": [ts, ts],
                }
            ),
            d,
        )
        ids = [f"i{d}{k}" for k in range(10)]
        land(
            raw,
            "impressions",
            pd.DataFrame(
                {
                    "impression_id": ids,
                    "event_ts": [ts] * 10,
                    "surface": ["search"] * 5 + ["home_feed"] * 5,
                    "_ingested_at": [ts] * 10,
                }
            ),
            d,
        )
        land(raw, "clicks", pd.DataFrame({"impression_id": ids, "_ingested_at": [ts] * 10}), d)


def read(raw: Path, table: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((raw / table).glob("dt=*/*.parquet"))], ignore_index=True)


START = (DAY0 + timedelta(days=1)).date()


def test_zero_column_from_its_day(tmp_path: Path) -> None:
    world(tmp_path)
    plant(tmp_path, [Incident.parse(f"zero_column@{START}")])
    prices = read(tmp_path, "product_prices")
    assert prices.loc[prices["price_date"] < START, "discount_pct"].tolist() == [0.1, 0.2]
    assert (prices.loc[prices["price_date"] >= START, "discount_pct"] == 0).all()


def test_price_shock_in_one_category(tmp_path: Path) -> None:
    world(tmp_path)
    plant(tmp_path, [Incident.parse(f"price_shock:toys@{START}")])
    prices = read(tmp_path, "product_prices")
    shocked = prices[(prices["price_date"] >= START) & (prices["product_id"] == "a")]
    assert shocked["price"].tolist() == [10.0 * PRICE_FACTOR] * 2
    assert prices.loc[prices["product_id"] == "b", "price"].tolist() == [20.0] * 3


def test_late_batch_moves_one_day(tmp_path: Path) -> None:
    world(tmp_path)
    plant(tmp_path, [Incident.parse(f"late_batch@{START}")])
    imps = read(tmp_path, "impressions")
    late = imps["impression_id"].str.startswith("i1")
    delta = (imps.loc[late, "_ingested_at"] - imps.loc[late, "event_ts"]).unique().tolist()
    assert delta == [pd.Timedelta(hours=LATE_HOURS)]
    assert (imps.loc[~late, "_ingested_at"] == imps.loc[~late, "event_ts"]).all()


def test_traffic_drop_keeps_a_fifth_of_one_surface_and_their_clicks(tmp_path: Path) -> None:
    world(tmp_path)
    plant(tmp_path, [Incident.parse(f"traffic_drop:search@{START}")])
    imps, clicks = read(tmp_path, "impressions"), read(tmp_path, "clicks")
    search = imps[imps["surface"] == "search"]
    assert (imps["surface"] == "home_feed").sum() == 15
    assert search["impression_id"].str.startswith("i0").sum() == 5  # before the day: untouched
    assert search["impression_id"].str.match("i[12]").sum() <= 5  # of 10 from the day on, about a fifth kept
    assert set(clicks["impression_id"]) == set(imps["impression_id"])


@pytest.mark.parametrize(
    ("text", "needle"),
    [("meltdown@2026-03-01", "kind must be one of"), ("late_batch", "expected KIND"), ("zero_column@03/01", "not a")],
)
def test_a_bad_incident_is_one_line_and_exit_2(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Incident.parse(text)
    result = CliRunner().invoke(app, ["generate", "--incident", text])
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output


def test_default_targets() -> None:
    assert Incident.parse("zero_column@2026-03-01").target == "discount_pct"
    assert Incident.parse("traffic_drop@2026-03-01") == Incident(
        kind="traffic_drop", start=date(2026, 3, 1), target="search"
    )
