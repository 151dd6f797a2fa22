"""A small hand-made raw landing zone (docs/data_contracts.md section 1) with known answers.

Every scenario the transforms tests check is written here once, with the dates the tests assert on:
the data runs from 2026-10-01 (first impression) to 2026-10-20 (last impression day).

* user u0000001 has exactly one impression, one click and one order, on 2026-10-05 (the rolling-window user);
* user u0000002 has a late impression (happened 10-08, landed 10-11), an impression just before midnight
  that lands after it (10-12 23:58 -> 10-13), a duplicated impression (10-14, landed again 10-15),
  a late click (10-14 -> 10-16), the first (10-01) and last (10-20) impressions, and a straggler of 10-20
  that lands on 10-21 (after the end of the data);
* every flaw kind once, with the reason staging must give it (FLAWS).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# The landing zone's schemas are the simulator's: one contract, written once (docs/data_contracts.md).
from simulator.writer import SCHEMAS

FIRST_DAY = date(2026, 10, 1)
LAST_DAY = date(2026, 10, 20)
SNAPSHOT_LANDING = datetime(2026, 10, 20, 23, 0, tzinfo=UTC)  # dimension snapshots land on the last day

# the rolling-window scenario: user u0000001's only activity
WINDOW_DAY = date(2026, 10, 5)
WINDOW_ORDER_GMV = 160.0
# the late impression of u0000002: happened on LATE_EVENT_DAY, landed on LATE_ARRIVAL_DAY
LATE_EVENT_DAY = date(2026, 10, 8)
LATE_ARRIVAL_DAY = date(2026, 10, 11)
# the impression of 10-12 23:58 that lands on 10-13 00:03
MIDNIGHT_EVENT_DAY = date(2026, 10, 12)
MIDNIGHT_ARRIVAL_DAY = date(2026, 10, 13)
# the duplicated impression (landed on DUPLICATE_DAY and again the next day) and its late click
DUPLICATE_DAY = date(2026, 10, 14)
LATE_CLICK_ARRIVAL_DAY = date(2026, 10, 16)
CAMPAIGN_DAY = date(2026, 10, 14)

# reason staging must give each flawed row: (source_table, record_id) -> reason
FLAWS: dict[tuple[str, str], str] = {
    ("users", "u0000009"): "unknown_country",
    ("product_prices", "p000002|2026-10-05"): "invalid_discount",
    ("merchant_daily", "m00002|2026-10-07"): "invalid_rating",
    ("impressions", "impbad01"): "null_user_id",
    ("impressions", "impbad02"): "null_product_id",
    ("impressions", "impbad03"): "null_event_ts",
    ("impressions", "impbad04"): "null_surface",
    ("impressions", "impbad05"): "unknown_surface",
    ("impressions", "impbad06"): "bad_position",
    ("impressions", "impbad07"): "future_event_ts",
    ("impressions", "impbad08"): "unknown_user",
    ("impressions", "impbad09"): "unknown_product",
    ("impressions", "imp0004"): "duplicate",
    ("clicks", "clkbad01"): "orphan_impression",
    ("clicks", "clkbad02"): "rejected_impression",
    ("clicks", "clkbad03"): "impression_mismatch",
    ("clicks", "clkbad04"): "null_user_id",
    ("clicks", "clk0001"): "duplicate",
    ("orders", "ordbad01"): "bad_quantity",
    ("orders", "ordbad02"): "negative_gmv",
    ("orders", "ordbad03"): "gmv_mismatch",
    ("orders", "ordbad04"): "orphan_impression",
    ("orders", "ordbad05"): "orphan_click",
    ("orders", "ordbad06"): "future_event_ts",
}


def ts(day: date, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def d(month_day: int) -> date:
    return date(2026, 10, month_day)


def _impression(iid, event_ts, user, product, ingested=None, surface="home_feed", position=1):
    ingested = ingested if ingested is not None else event_ts + timedelta(minutes=1)
    return {
        "impression_id": iid,
        "request_id": f"req-{iid}",
        "event_ts": event_ts,
        "user_id": user,
        "product_id": product,
        "surface": surface,
        "position": position,
        "_ingested_at": ingested,
    }


def _click(cid, iid, event_ts, user, product, ingested=None):
    ingested = ingested if ingested is not None else event_ts + timedelta(minutes=1)
    return {
        "click_id": cid,
        "impression_id": iid,
        "event_ts": event_ts,
        "user_id": user,
        "product_id": product,
        "_ingested_at": ingested,
    }


def _order(oid, iid, cid, event_ts, user, product, quantity, unit_price, gmv=None, ingested=None):
    ingested = ingested if ingested is not None else event_ts + timedelta(minutes=1)
    gmv = quantity * unit_price if gmv is None else gmv
    return {
        "order_id": oid,
        "impression_id": iid,
        "click_id": cid,
        "event_ts": event_ts,
        "user_id": user,
        "product_id": product,
        "quantity": quantity,
        "unit_price": unit_price,
        "gmv": gmv,
        "_ingested_at": ingested,
    }


def build_tables() -> dict[str, list[dict]]:
    snap = SNAPSHOT_LANDING
    users = [
        {
            "user_id": "u0000001",
            "country": "ID",
            "device": "android",
            "signup_ts": ts(date(2026, 1, 1), 9),
            "_ingested_at": snap,
        },
        {
            "user_id": "u0000002",
            "country": "TH",
            "device": "ios",
            "signup_ts": ts(d(3), 10),
            "_ingested_at": snap,
        },
        # signs up after the end of the data and never acts: no feature rows
        {
            "user_id": "u0000003",
            "country": "VN",
            "device": "web",
            "signup_ts": ts(d(25)),
            "_ingested_at": snap,
        },
        {
            "user_id": "u0000009",
            "country": "XX",
            "device": "web",
            "signup_ts": ts(d(2)),
            "_ingested_at": snap,
        },
    ]
    merchants = [
        {
            "merchant_id": "m00001",
            "country": "ID",
            "tier": "mall",
            "main_category_l1": "electronics",
            "joined_ts": ts(date(2025, 1, 1)),
            "_ingested_at": snap,
        },
        {
            "merchant_id": "m00002",
            "country": "TH",
            "tier": "regular",
            "main_category_l1": "fashion",
            "joined_ts": ts(d(5), 8),
            "_ingested_at": snap,
        },
    ]
    products = [
        {
            "product_id": "p000001",
            "merchant_id": "m00001",
            "category_l1": "electronics",
            "category_l2": "phones",
            "base_price": 100.0,
            "created_ts": ts(date(2025, 6, 1)),
            "_ingested_at": snap,
        },
        {
            "product_id": "p000002",
            "merchant_id": "m00001",
            "category_l1": "fashion",
            "category_l2": "shoes",
            "base_price": 20.0,
            "created_ts": ts(d(2), 12),
            "_ingested_at": snap,
        },
        {
            "product_id": "p000003",
            "merchant_id": "m00002",
            "category_l1": "fashion",
            "category_l2": "bags",
            "base_price": 40.0,
            "created_ts": ts(d(6), 12),
            "_ingested_at": snap,
        },
    ]
    product_prices = [
        {
            "product_id": "p000001",
            "price_date": d(1),
            "price": 100.0,
            "discount_pct": 0.0,
            "_ingested_at": ts(d(1), 0, 1),
        },
        {
            "product_id": "p000001",
            "price_date": d(10),
            "price": 80.0,
            "discount_pct": 0.2,
            "_ingested_at": ts(d(10), 0, 1),
        },
        {
            "product_id": "p000002",
            "price_date": d(2),
            "price": 20.0,
            "discount_pct": 0.0,
            "_ingested_at": ts(d(2), 0, 1),
        },
        {
            "product_id": "p000002",
            "price_date": d(5),
            "price": 15.0,
            "discount_pct": 0.95,
            "_ingested_at": ts(d(5), 0, 1),
        },
    ]
    merchant_daily = [
        {
            "merchant_id": "m00001",
            "snapshot_date": d(day),
            "rating": 4.5,
            "is_live": day == 4,
            "_ingested_at": ts(d(day), 0, 2),
        }
        for day in range(1, 21)
    ] + [
        {
            "merchant_id": "m00002",
            "snapshot_date": d(6),
            "rating": 3.0,
            "is_live": False,
            "_ingested_at": ts(d(6), 0, 2),
        },
        {
            "merchant_id": "m00002",
            "snapshot_date": d(7),
            "rating": 0.5,
            "is_live": False,
            "_ingested_at": ts(d(7), 0, 2),
        },
    ]
    campaign_calendar = [
        {
            "calendar_date": CAMPAIGN_DAY,
            "campaign_name": "payday",
            "is_mega_sale": False,
            "_ingested_at": ts(d(1), 0, 0),
        },
    ]

    u1, u2 = "u0000001", "u0000002"
    p1, p2, p3 = "p000001", "p000002", "p000003"
    imp0004 = _impression("imp0004", ts(DUPLICATE_DAY, 10), u2, p1, surface="search", position=3)
    impressions = [
        _impression("imp0000", ts(FIRST_DAY, 8), u2, p1),
        _impression("imp0001", ts(WINDOW_DAY, 12), u1, p1, position=2),
        _impression("imp0002", ts(LATE_EVENT_DAY, 9), u2, p2, ingested=ts(LATE_ARRIVAL_DAY, 9, 30)),
        _impression("imp0003", ts(MIDNIGHT_EVENT_DAY, 23, 58), u2, p3, ingested=ts(MIDNIGHT_ARRIVAL_DAY, 0, 3)),
        imp0004,
        {**imp0004, "_ingested_at": ts(DUPLICATE_DAY + timedelta(days=1), 8)},  # the same row landed twice
        _impression("imp0005", ts(LAST_DAY, 15), u2, p2),
        _impression("imp0006", ts(LAST_DAY, 23, 59, 30), u2, p2, ingested=ts(LAST_DAY + timedelta(days=1), 0, 4)),
        # flaws
        _impression("impbad01", ts(d(6), 10), None, p1),
        _impression("impbad02", ts(d(6), 10), u2, None),
        _impression("impbad03", None, u2, p1, ingested=ts(d(6), 10)),
        _impression("impbad04", ts(d(6), 10), u2, p1, surface=None),
        _impression("impbad05", ts(d(6), 10), u2, p1, surface="banner"),
        _impression("impbad06", ts(d(6), 10), u2, p1, position=0),
        _impression("impbad07", ts(d(6), 10), u2, p1, ingested=ts(d(6), 9)),
        _impression("impbad08", ts(d(6), 10), "u0000009", p1),
        _impression("impbad09", ts(d(6), 10), u2, "p999999"),
    ]
    clk0001 = _click("clk0001", "imp0001", ts(WINDOW_DAY, 12, 0, 30), u1, p1)
    clicks = [
        clk0001,
        {**clk0001, "_ingested_at": ts(WINDOW_DAY, 12, 30)},  # landed twice
        _click("clk0004", "imp0004", ts(DUPLICATE_DAY, 10, 0, 20), u2, p1, ingested=ts(LATE_CLICK_ARRIVAL_DAY, 7)),
        _click("clk0005", "imp0005", ts(LAST_DAY, 15, 1), u2, p2),
        # flaws
        _click("clkbad01", "imp9999", ts(d(6), 10, 1), u2, p1),
        _click("clkbad02", "impbad01", ts(d(6), 10, 1), u2, p1),
        _click("clkbad03", "imp0000", ts(FIRST_DAY, 8, 1), u2, p2),
        _click("clkbad04", "imp0000", ts(FIRST_DAY, 8, 1), None, p1),
    ]
    orders = [
        _order("ord0001", "imp0001", "clk0001", ts(WINDOW_DAY, 12, 5), u1, p1, 2, 80.0),
        _order("ord0005", "imp0005", "clk0005", ts(LAST_DAY, 15, 10), u2, p2, 1, 20.0),
        _order("ord0006", "imp0005", "clk0005", ts(LAST_DAY, 15, 20), u2, p2, 3, 20.0),
        # flaws
        _order("ordbad01", "imp0001", "clk0001", ts(WINDOW_DAY, 12, 6), u1, p1, 0, 80.0),
        _order("ordbad02", "imp0001", "clk0001", ts(WINDOW_DAY, 12, 6), u1, p1, 1, 80.0, gmv=-5.0),
        _order("ordbad03", "imp0001", "clk0001", ts(WINDOW_DAY, 12, 6), u1, p1, 2, 80.0, gmv=150.0),
        _order("ordbad04", "imp9999", "clk0001", ts(WINDOW_DAY, 12, 6), u1, p1, 1, 80.0),
        _order("ordbad05", "imp0001", "clk9999", ts(WINDOW_DAY, 12, 6), u1, p1, 1, 80.0),
        _order(
            "ordbad06",
            "imp0001",
            "clk0001",
            ts(WINDOW_DAY, 12, 6),
            u1,
            p1,
            1,
            80.0,
            ingested=ts(WINDOW_DAY, 11),
        ),
    ]
    return {
        "users": users,
        "merchants": merchants,
        "products": products,
        "product_prices": product_prices,
        "merchant_daily": merchant_daily,
        "campaign_calendar": campaign_calendar,
        "impressions": impressions,
        "clicks": clicks,
        "orders": orders,
    }


def write_raw_landing_zone(home: Path) -> None:
    """Write every table under home/raw/<table>/dt=<landing date>/part-00000.parquet."""
    for table, rows in build_tables().items():
        schema = SCHEMAS[table]
        by_landing_date: dict[date, list[dict]] = defaultdict(list)
        for row in rows:
            by_landing_date[row["_ingested_at"].astimezone(UTC).date()].append(row)
        for landing_date, partition_rows in sorted(by_landing_date.items()):
            folder = home / "raw" / table / f"dt={landing_date.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(partition_rows, schema=schema), folder / "part-00000.parquet")
