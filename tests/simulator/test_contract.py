"""The raw landing zone and the oracle match docs/data_contracts.md exactly."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.writer import SCHEMAS
from tests.simulator.conftest import END_DATE, Run, simulate

TS = pa.timestamp("us", tz="UTC")
S = pa.string()

# Written out from the contract by hand, so a drift in simulator/writer.py fails here.
CONTRACT: dict[str, list[tuple[str, pa.DataType]]] = {
    "users": [("user_id", S), ("country", S), ("device", S), ("signup_ts", TS), ("_ingested_at", TS)],
    "merchants": [
        ("merchant_id", S),
        ("country", S),
        ("tier", S),
        ("main_category_l1", S),
        ("joined_ts", TS),
        ("_ingested_at", TS),
    ],
    "products": [
        ("product_id", S),
        ("merchant_id", S),
        ("category_l1", S),
        ("category_l2", S),
        ("base_price", pa.float64()),
        ("created_ts", TS),
        ("_ingested_at", TS),
    ],
    "product_prices": [
        ("product_id", S),
        ("price_date", pa.date32()),
        ("price", pa.float64()),
        ("discount_pct", pa.float64()),
        ("_ingested_at", TS),
    ],
    "merchant_daily": [
        ("merchant_id", S),
        ("snapshot_date", pa.date32()),
        ("rating", pa.float64()),
        ("is_live", pa.bool_()),
        ("_ingested_at", TS),
    ],
    "campaign_calendar": [
        ("calendar_date", pa.date32()),
        ("campaign_name", S),
        ("is_mega_sale", pa.bool_()),
        ("_ingested_at", TS),
    ],
    "impressions": [
        ("impression_id", S),
        ("request_id", S),
        ("event_ts", TS),
        ("user_id", S),
        ("product_id", S),
        ("surface", S),
        ("position", pa.int32()),
        ("_ingested_at", TS),
    ],
    "clicks": [
        ("click_id", S),
        ("impression_id", S),
        ("event_ts", TS),
        ("user_id", S),
        ("product_id", S),
        ("_ingested_at", TS),
    ],
    "orders": [
        ("order_id", S),
        ("impression_id", S),
        ("click_id", S),
        ("event_ts", TS),
        ("user_id", S),
        ("product_id", S),
        ("quantity", pa.int32()),
        ("unit_price", pa.float64()),
        ("gmv", pa.float64()),
        ("_ingested_at", TS),
    ],
}
ORACLE = [
    ("impression_id", S),
    ("p_click", pa.float64()),
    ("p_order_given_click", pa.float64()),
    ("expected_order_value", pa.float64()),
]
ID_PATTERNS = {
    "user_id": r"u\d{7}",
    "product_id": r"p\d{6}",
    "merchant_id": r"m\d{5}",
    "impression_id": r"imp\d{9}",
    "request_id": r"req\d{9}",
    "click_id": r"clk\d{9}",
    "order_id": r"ord\d{9}",
}
DIMENSIONS = ("users", "merchants", "products", "campaign_calendar")
# Words that would betray a latent trait or the oracle if they ever showed up in raw.
LATENT_WORDS = (
    "taste",
    "quality",
    "sensitivity",
    "popularity",
    "affinity",
    "propensity",
    "bias",
    "p_click",
    "p_order",
    "cause",
)


def test_writer_schemas_are_the_contract() -> None:
    assert set(SCHEMAS) == set(CONTRACT)
    for name, fields in CONTRACT.items():
        assert SCHEMAS[name].equals(pa.schema(fields)), name


def test_every_raw_file_has_the_contract_schema(tiny: Run) -> None:
    assert sorted(p.name for p in tiny.raw.iterdir()) == sorted(CONTRACT)
    for name, fields in CONTRACT.items():
        partitions = sorted((tiny.raw / name).iterdir())
        assert partitions and all(re.fullmatch(r"dt=\d{4}-\d{2}-\d{2}", p.name) for p in partitions), name
        assert all([f.name for f in p.iterdir()] == ["part-00000.parquet"] for p in partitions), name
        for path in (p / "part-00000.parquet" for p in partitions):
            assert pq.read_schema(path).remove_metadata().equals(pa.schema(fields)), path


def test_partitions_are_landing_dates_inside_the_period(tiny: Run) -> None:
    start = END_DATE - timedelta(days=tiny.config.spec.n_days)
    last_day = END_DATE - timedelta(days=1)
    for name in CONTRACT:
        df = tiny.table(name)
        landed = df["_ingested_at"].dt.date
        assert (landed == df["dt"].astype("datetime64[ns]").dt.date).all(), name
        assert landed.min() >= start and landed.max() <= last_day, name
        if name in DIMENSIONS:
            assert set(df["dt"].astype(str)) == {last_day.isoformat()}, name


def test_ids_are_zero_padded(tiny: Run) -> None:
    for name in CONTRACT:
        df = tiny.table(name)
        for column, pattern in ID_PATTERNS.items():
            if column in df:
                values = df[column].dropna()
                assert len(values) and values.str.fullmatch(pattern).all(), (name, column)


def test_labels_and_ranges(tiny: Run) -> None:
    users = tiny.table("users")
    assert set(users["country"]) == {"ID", "TH", "VN", "MY", "PH", "SG"}
    assert set(users["device"]) == {"android", "ios", "web"}
    assert set(tiny.table("merchants")["tier"]) == {"mall", "preferred", "regular"}
    prices = tiny.table("product_prices")
    assert prices["discount_pct"].between(0.0, 0.9).all()
    assert (prices["price"] > 0).all()
    ratings = tiny.table("merchant_daily")["rating"]
    assert ratings.between(1.0, 5.0).all()
    impressions = tiny.table("impressions")
    real = impressions["surface"].isin(["home_feed", "short_video", "live_stream", "search"])
    assert real.mean() > 0.99
    assert set(impressions.loc[real, "surface"]) == {"home_feed", "short_video", "live_stream", "search"}
    calendar = tiny.table("campaign_calendar")
    assert calendar[["campaign_name", "is_mega_sale"]].values.tolist() == [["11.11", True]]


def test_no_latent_or_oracle_column_in_raw(tiny: Run) -> None:
    for name in CONTRACT:
        columns = pq.read_schema(next((tiny.raw / name).glob("dt=*/*.parquet"))).names
        assert not [c for c in columns if any(word in c for word in LATENT_WORDS)], name
    assert not list(tiny.raw.rglob("*truth*")) and not list(tiny.raw.rglob("*.json"))


def test_oracle_files(tiny: Run) -> None:
    truth = pq.read_table(tiny.oracle / "impression_truth.parquet")
    assert truth.schema.remove_metadata().equals(pa.schema(ORACLE))
    df = truth.to_pandas()
    assert df["impression_id"].is_unique
    assert df["p_click"].between(0, 1).all() and df["p_order_given_click"].between(0, 1).all()
    assert (df["expected_order_value"] > 0).all()
    # every real impression in raw has its truth; only planted orphans point elsewhere
    raw_ids = set(tiny.table("impressions")["impression_id"].dropna())
    assert raw_ids == set(df["impression_id"])
    for name in ("generative_params.json", "planted_causes.json", "flaw_counts.json"):
        assert (tiny.oracle / name).is_file()


def test_ids_reference_each_other(tiny: Run) -> None:
    impressions = tiny.table("impressions").drop_duplicates("impression_id").set_index("impression_id")
    clicks = tiny.table("clicks")
    known = clicks["impression_id"].isin(impressions.index)
    assert known.mean() > 0.98
    joined = clicks[known].join(impressions, on="impression_id", rsuffix="_imp")
    joined = joined.dropna(subset=["user_id", "product_id", "event_ts", "user_id_imp", "product_id_imp"])
    assert len(joined) > 100
    assert (joined["user_id"] == joined["user_id_imp"]).all()
    assert (joined["product_id"] == joined["product_id_imp"]).all()
    assert (joined["event_ts"] > joined["event_ts_imp"]).mean() > 0.98


def test_a_period_without_campaigns_still_lands_an_empty_calendar(tmp_path: Path) -> None:
    # 2026-03-04 .. 2026-03-24 falls between 3.3 and payday on the 25th
    run = simulate(tmp_path, end_date=date(2026, 3, 25))
    files = list((run.raw / "campaign_calendar").glob("dt=2026-03-24/part-00000.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 0 and table.schema.remove_metadata().equals(pa.schema(CONTRACT["campaign_calendar"]))
