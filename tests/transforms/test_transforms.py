"""The dbt project against a hand-made landing zone with known answers (see transforms_fixture_data.py).

One `dbt build` (session fixture in conftest.py) runs every model, data test and unit test; these tests then
check exact values in the warehouse and the parquet exports.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .transforms_fixture_data import (
    CAMPAIGN_DAY,
    DUPLICATE_DAY,
    FIRST_DAY,
    FLAWS,
    LAST_DAY,
    LATE_ARRIVAL_DAY,
    LATE_CLICK_ARRIVAL_DAY,
    LATE_EVENT_DAY,
    MIDNIGHT_ARRIVAL_DAY,
    MIDNIGHT_EVENT_DAY,
    WINDOW_DAY,
    WINDOW_ORDER_GMV,
)

KEYS_AND_TIMES = ["event_timestamp", "feature_date", "created_timestamp"]
# docs/data_contracts.md section 3, in the order the marts are built
MART_COLUMNS: dict[str, list[str]] = {
    "user_features": [
        "user_id",
        *KEYS_AND_TIMES,
        *[
            "country",
            "device",
            "user_impressions_7d",
            "user_clicks_7d",
            "user_ctr_7d",
            "user_impressions_30d",
            "user_clicks_30d",
            "user_ctr_30d",
            "user_orders_30d",
            "user_spend_30d",
            "user_days_since_signup",
            "user_clicked_log_price_rel_30d",
            "user_price_lift_30d",
        ],
    ],
    "user_category_features": [
        "user_id",
        "category_l1",
        *KEYS_AND_TIMES,
        *["uc_impressions_30d", "uc_clicks_30d", "uc_orders_30d", "uc_click_share_30d"],
    ],
    "product_features": [
        "product_id",
        *KEYS_AND_TIMES,
        *[
            "merchant_id",
            "category_l1",
            "price",
            "discount_pct",
            "price_rel_category",
            "product_impressions_7d",
            "product_clicks_7d",
            "product_ctr_7d",
            "product_impressions_30d",
            "product_clicks_30d",
            "product_orders_30d",
            "product_cvr_30d",
            "product_gmv_30d",
            "product_age_days",
        ],
    ],
    "merchant_features": [
        "merchant_id",
        *KEYS_AND_TIMES,
        *[
            "merchant_tier",
            "merchant_rating",
            "merchant_is_live",
            "merchant_gmv_7d",
            "merchant_gmv_30d",
            "merchant_orders_30d",
            "merchant_ctr_30d",
            "merchant_cvr_30d",
            "merchant_product_count",
            "merchant_age_days",
        ],
    ],
    "campaign_calendar": ["calendar_date", "campaign_name", "is_mega_sale"],
    "impression_labels": [
        "impression_id",
        "request_id",
        "event_timestamp",
        "feature_date",
        "user_id",
        "product_id",
        "merchant_id",
        "category_l1",
        "surface",
        "position",
        "hour_of_day",
        "is_campaign_day",
        "campaign_name",
        "clicked",
        "converted",
        "order_gmv",
    ],
}
# The campaign plan (issue 18, section 4): a row describes the day it is used on, true from when its price list
# landed (tests/point_in_time/test_campaign_plan.py), so it is not a "true from the next midnight" feature mart.
MART_COLUMNS["product_campaign_plan"] = [
    "product_id",
    "event_timestamp",
    "plan_date",
    "created_timestamp",
    "plan_day_kind",
    "plan_discount_pct",
    "plan_price",
    "plan_price_rel_base",
]
FEATURE_MARTS = [
    name for name in MART_COLUMNS if name not in {"impression_labels", "campaign_calendar", "product_campaign_plan"}
]
STRING_COLUMNS = {
    "user_id",
    "product_id",
    "merchant_id",
    "impression_id",
    "request_id",
    "category_l1",
    "country",
    "device",
    "merchant_tier",
    "surface",
    "campaign_name",
}
DOUBLE_MARKERS = (
    "_ctr_",
    "_cvr_",
    "_share_",
    "_spend_",
    "_gmv_",
    "price",
    "discount_pct",
    "rating",
    "order_gmv",
)


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def feature_series(db, mart: str, key: str, entity: str, column: str) -> dict[date, object]:
    rows = db.execute(
        f"select feature_date, {column} from {mart} where {key} = ? order by feature_date", [entity]
    ).fetchall()
    return dict(rows)


# --- the build itself ---------------------------------------------------------------------------------


def test_build_runs_unit_tests(built):
    results = json.loads((built.home / "dbt" / "target" / "run_results.json").read_text())["results"]
    unit = [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert len(unit) >= 8 and all(r["status"] == "pass" for r in unit)
    assert all(r["status"] in {"success", "pass", "warn"} for r in results)


def test_generated_state_lives_under_shoprank_home(built):
    assert (built.home / "dbt" / "target" / "manifest.json").exists()
    assert (built.home / "dbt" / "logs" / "dbt.log").exists()
    assert sorted(p.name for p in built.marts_dir.iterdir()) == sorted(f"{m}.parquet" for m in MART_COLUMNS)


# --- marts: shape and types ---------------------------------------------------------------------------


@pytest.mark.parametrize("mart", list(MART_COLUMNS))
def test_marts_have_exactly_the_contract_columns(db, built, mart):
    in_warehouse = [row[0] for row in db.execute(f"describe {mart}").fetchall()]
    in_parquet = pq.read_schema(built.marts_dir / f"{mart}.parquet").names
    assert in_warehouse == MART_COLUMNS[mart]
    assert in_parquet == MART_COLUMNS[mart]


@pytest.mark.parametrize("mart", list(MART_COLUMNS))
def test_parquet_exports_have_contract_types(built, mart):
    schema = pq.read_schema(built.marts_dir / f"{mart}.parquet")
    for field in schema:
        name, typ = field.name, field.type
        if name in {"event_timestamp", "created_timestamp"}:
            assert pa.types.is_timestamp(typ) and typ.unit == "us" and typ.tz in {"UTC", "Etc/UTC"}, (
                name,
                typ,
            )
        elif name in {"feature_date", "calendar_date", "plan_date"}:
            assert typ == pa.date32(), (name, typ)
        elif name == "is_mega_sale":
            assert typ == pa.bool_(), (name, typ)
        elif name in STRING_COLUMNS:
            assert pa.types.is_string(typ) or pa.types.is_large_string(typ), (name, typ)
        elif any(marker in name for marker in DOUBLE_MARKERS):
            assert typ == pa.float64(), (name, typ)
        else:  # counts, day counts, flags, position, hour
            assert typ == pa.int64(), (name, typ)


@pytest.mark.parametrize("mart", FEATURE_MARTS)
def test_feature_rows_become_true_the_next_midnight(built, mart):
    table = pq.read_table(built.marts_dir / f"{mart}.parquet").to_pylist()
    assert table
    for row in table:
        expected = datetime.combine(row["feature_date"] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        assert row["event_timestamp"] == expected
        assert row["created_timestamp"] == expected
    # the freshest row is the last day of data, true from the next midnight
    assert max(row["feature_date"] for row in table) == LAST_DAY


# --- time semantics -----------------------------------------------------------------------------------


def test_rolling_7d_window_counts_an_event_on_d_to_d_plus_6(db):
    impressions = feature_series(db, "user_features", "user_id", "u0000001", "user_impressions_7d")
    clicks = feature_series(db, "user_features", "user_id", "u0000001", "user_clicks_7d")
    window = set(days(WINDOW_DAY, WINDOW_DAY + timedelta(days=6)))
    for day in days(FIRST_DAY, LAST_DAY):
        assert impressions[day] == (1 if day in window else 0), day
        assert clicks[day] == (1 if day in window else 0), day
    assert impressions[WINDOW_DAY - timedelta(days=1)] == 0
    assert impressions[WINDOW_DAY + timedelta(days=7)] == 0


def test_rolling_30d_window_counts_an_event_from_d(db):
    orders = feature_series(db, "user_features", "user_id", "u0000001", "user_orders_30d")
    spend = feature_series(db, "user_features", "user_id", "u0000001", "user_spend_30d")
    for day in days(FIRST_DAY, LAST_DAY):
        assert orders[day] == (1 if day >= WINDOW_DAY else 0), day
        assert spend[day] == (WINDOW_ORDER_GMV if day >= WINDOW_DAY else 0.0), day


def test_late_event_counts_on_its_arrival_day_not_its_event_day(db):
    product = feature_series(db, "product_features", "product_id", "p000002", "product_impressions_7d")
    assert product[LATE_EVENT_DAY] == 0
    assert product[LATE_ARRIVAL_DAY - timedelta(days=1)] == 0
    assert product[LATE_ARRIVAL_DAY] == 1
    user = feature_series(db, "user_features", "user_id", "u0000002", "user_impressions_7d")
    assert user[LATE_ARRIVAL_DAY - timedelta(days=1)] == 0  # the 10-01 impression left the window on 10-08
    assert user[LATE_ARRIVAL_DAY] == 1
    # the label keeps the impression's own time
    label = db.execute("select feature_date from impression_labels where impression_id = 'imp0002'").fetchone()
    assert label == (LATE_EVENT_DAY,)


def test_event_landing_after_midnight_counts_the_next_day(db):
    product = feature_series(db, "product_features", "product_id", "p000003", "product_impressions_7d")
    assert product[MIDNIGHT_EVENT_DAY] == 0
    assert product[MIDNIGHT_ARRIVAL_DAY] == 1


def test_late_click_counts_on_its_own_arrival_day(db):
    clicks = feature_series(db, "product_features", "product_id", "p000001", "product_clicks_7d")
    assert clicks[DUPLICATE_DAY] == 0
    assert clicks[LATE_CLICK_ARRIVAL_DAY - timedelta(days=1)] == 0
    assert clicks[LATE_CLICK_ARRIVAL_DAY] == 1


def test_event_not_landed_by_the_end_is_in_labels_but_not_features(db):
    assert db.execute("select max(feature_date) from user_features").fetchone() == (LAST_DAY,)
    # u0000002's 30-day impressions at the end: 10-01, 10-08 (late), 10-12 (after midnight), 10-14, 10-20;
    # the 10-20 23:59 impression landed on 10-21, after the end of the data
    user = feature_series(db, "user_features", "user_id", "u0000002", "user_impressions_30d")
    assert user[LAST_DAY] == 5
    assert db.execute("select count(*) from impression_labels where impression_id = 'imp0006'").fetchone() == (1,)


def test_a_duplicate_counts_once(db):
    user = feature_series(db, "user_features", "user_id", "u0000002", "user_impressions_7d")
    assert user[DUPLICATE_DAY] == 3  # 10-08 (landed 10-11), 10-12 (landed 10-13) and the duplicated 10-14
    assert user[DUPLICATE_DAY + timedelta(days=1)] == 3
    clicks = feature_series(db, "user_features", "user_id", "u0000001", "user_clicks_30d")
    assert clicks[LAST_DAY] == 1
    kept = db.execute("select _ingested_at from stg_impressions where impression_id = 'imp0004'").fetchall()
    assert kept == [(datetime(2026, 10, 14, 10, 1, tzinfo=UTC),)]


# --- quarantine ---------------------------------------------------------------------------------------


def test_every_flaw_lands_in_quarantine_with_its_reason(db):
    rows = db.execute("select source_table, record_id, reason from quarantine_events").fetchall()
    assert len(rows) == len(FLAWS)
    assert {(table, record): reason for table, record, reason in rows} == FLAWS


def test_the_later_duplicate_copy_is_the_quarantined_one(db):
    ingested = db.execute(
        "select _ingested_at from quarantine_events where source_table = 'impressions' and record_id = 'imp0004'"
    ).fetchall()
    assert ingested == [(datetime(2026, 10, 15, 8, 0, tzinfo=UTC),)]


def test_quarantine_summary_counts_by_reason(db):
    summary = db.execute(
        "select source_table, reason, quarantined_rows, landed_rows from quarantine_summary"
    ).fetchall()
    expected: dict[tuple[str, str], int] = {}
    for (table, _), reason in FLAWS.items():
        expected[(table, reason)] = expected.get((table, reason), 0) + 1
    assert {(t, r): n for t, r, n, _ in summary} == expected
    landed = {t: n for t, _, _, n in summary}
    assert landed["impressions"] == 17 and landed["clicks"] == 8 and landed["orders"] == 9


def test_nothing_is_dropped_silently(db):
    for table in ["users", "products", "product_prices", "merchant_daily", "impressions", "clicks", "orders"]:
        landed = db.execute(f"select count(*) from stg_{table}_checked").fetchone()[0]
        staged = db.execute(f"select count(*) from stg_{table}").fetchone()[0]
        quarantined = db.execute("select count(*) from quarantine_events where source_table = ?", [table]).fetchone()[0]
        assert landed == staged + quarantined, table


# --- dense rows and dimensions ------------------------------------------------------------------------


def test_rows_are_dense_from_first_activity_or_creation(db):
    def span(mart, key, entity):
        return db.execute(
            f"select min(feature_date), max(feature_date), count(*) from {mart} where {key} = ?", [entity]
        ).fetchone()

    n_days = (LAST_DAY - FIRST_DAY).days + 1
    assert span("user_features", "user_id", "u0000001") == (
        FIRST_DAY,
        LAST_DAY,
        n_days,
    )  # signed up long before
    assert span("user_features", "user_id", "u0000002") == (
        FIRST_DAY,
        LAST_DAY,
        n_days,
    )  # acted before signup
    assert span("user_features", "user_id", "u0000003") == (None, None, 0)  # signs up after the end
    assert span("product_features", "product_id", "p000003") == (date(2026, 10, 6), LAST_DAY, 15)
    assert span("merchant_features", "merchant_id", "m00002") == (date(2026, 10, 5), LAST_DAY, 16)
    fashion = db.execute(
        "select min(feature_date), count(*) from user_category_features "
        "where user_id = 'u0000002' and category_l1 = 'fashion'"
    ).fetchone()
    assert fashion == (LATE_ARRIVAL_DAY, (LAST_DAY - LATE_ARRIVAL_DAY).days + 1)


def test_user_attributes_and_days_since_signup(db):
    row = db.execute(
        "select country, device, user_days_since_signup from user_features "
        "where user_id = 'u0000002' and feature_date = ?",
        [date(2026, 10, 13)],
    ).fetchone()
    assert row == ("TH", "ios", 10)
    early = feature_series(db, "user_features", "user_id", "u0000002", "user_days_since_signup")
    assert early[FIRST_DAY] == 0  # active before signing up: clamped at 0


def test_product_price_and_rejected_price_row(db):
    price = feature_series(db, "product_features", "product_id", "p000001", "price")
    assert price[date(2026, 10, 9)] == 100.0 and price[date(2026, 10, 10)] == 80.0
    # p000002's 10-05 price row had an impossible discount: the 10-02 price still holds
    row = db.execute(
        "select price, discount_pct, price_rel_category from product_features "
        "where product_id = 'p000002' and feature_date = ?",
        [date(2026, 10, 5)],
    ).fetchone()
    assert row == (20.0, 0.0, 1.0)
    # fashion on 10-11: p000002 at 20 and p000003 at its base price 40, median 30
    rel = db.execute(
        "select product_id, price_rel_category from product_features "
        "where category_l1 = 'fashion' and feature_date = ? order by product_id",
        [date(2026, 10, 11)],
    ).fetchall()
    assert rel == [("p000002", pytest.approx(20 / 30)), ("p000003", pytest.approx(40 / 30))]


def test_product_ctr_is_smoothed_toward_the_global_rate(db):
    # on 10-05 the 7-day window holds imp0000 (10-01, no click) and imp0001 + its click (10-05): prior 1/2
    row = db.execute(
        "select product_impressions_7d, product_clicks_7d, product_ctr_7d from product_features "
        "where product_id = 'p000001' and feature_date = ?",
        [WINDOW_DAY],
    ).fetchone()
    assert row == (2, 1, pytest.approx((1 + 100 * 0.5) / (2 + 100)))


def test_merchant_features(db):
    live = feature_series(db, "merchant_features", "merchant_id", "m00001", "merchant_is_live")
    assert live[date(2026, 10, 4)] == 1 and live[date(2026, 10, 5)] == 0
    count = feature_series(db, "merchant_features", "merchant_id", "m00001", "merchant_product_count")
    assert count[FIRST_DAY] == 1 and count[date(2026, 10, 2)] == 2
    rating = feature_series(db, "merchant_features", "merchant_id", "m00002", "merchant_rating")
    # no snapshot before 10-06; the 10-07 rating of 0.5 was quarantined, so 10-06's 3.0 holds
    assert rating[date(2026, 10, 5)] is None
    assert rating[date(2026, 10, 6)] == 3.0 and rating[date(2026, 10, 7)] == 3.0
    gmv = feature_series(db, "merchant_features", "merchant_id", "m00001", "merchant_gmv_7d")
    assert gmv[WINDOW_DAY] == WINDOW_ORDER_GMV and gmv[WINDOW_DAY + timedelta(days=7)] == 0.0


# --- labels -------------------------------------------------------------------------------------------


def test_impression_labels(db):
    rows = {
        row[0]: row[1:]
        for row in db.execute(
            "select impression_id, clicked, converted, order_gmv, is_campaign_day, campaign_name,"
            " hour_of_day, merchant_id, category_l1 from impression_labels"
        ).fetchall()
    }
    assert set(rows) == {f"imp000{i}" for i in range(7)}
    assert rows["imp0001"] == (1, 1, WINDOW_ORDER_GMV, 0, "none", 12, "m00001", "electronics")
    assert rows["imp0005"][:3] == (1, 1, 80.0)  # two orders, 20 + 60
    assert rows["imp0004"][:6] == (1, 0, 0.0, 1, "payday", 10)  # clicked, late; on the campaign day
    assert rows["imp0003"][5] == 23
    assert rows["imp0000"][:3] == (0, 0, 0.0)  # its two clicks were both quarantined
    ts = db.execute("select event_timestamp from impression_labels where impression_id = 'imp0004'").fetchone()[0]
    assert ts == datetime.combine(CAMPAIGN_DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
