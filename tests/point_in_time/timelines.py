"""The hand-written world of the point-in-time suite: a few small timelines with known training rows.

Every story below is raw landing-zone data (docs/data_contracts.md section 1). The suite writes it as parquet
under a temporary SHOPRANK_HOME, runs the real `dbt build`, `feast apply`, and Feast's point-in-time join,
and compares every returned value with the one the story says it must be (the test modules hold the expected
values; docs/time_semantics.md explains the rules).

Reading guide. A feature row for day D ("feature_date D") counts the events *known* by the end of D: known
date = UTC date of greatest(event_ts, landed). It carries event_timestamp = created_timestamp = D+1 00:00 UTC
and Feast hands it to a training row whose timestamp is >= D+1 00:00 (and not older than the view's TTL).

Two periods, far enough apart that their rolling windows never mix:

* period A, 2026-10-05 .. 2026-11-05: the rolling-window story (every view, every value, clicks and orders);
* period B, 2026-11-08 .. 2026-11-14: boundary stories, one user each, and no clicks at all, so the global
  priors of the smoothed product rates are 0 in period B.

The first valid impression (10-05) starts the data and the last one (11-14) ends it: every entity has a dense
row per day up to feature_date 2026-11-14, which becomes true at 2026-11-15 00:00 UTC.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from tests.transforms.transforms_fixture_data import SCHEMAS

JAKARTA = ZoneInfo("Asia/Jakarta")  # UTC+7, no daylight saving


def utc(text: str) -> datetime:
    """'2026-11-10 00:00:00.000001' read as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def jakarta(text: str) -> datetime:
    """A Jakarta wall-clock time, as the UTC instant the landing zone stores."""
    return datetime.fromisoformat(text).replace(tzinfo=JAKARTA).astimezone(UTC)


def day(text: str) -> date:
    return date.fromisoformat(text)


def as_instant(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else utc(value)


# --- the events, as the stories write them ----------------------------------------------------------------


@dataclass(frozen=True)
class Impression:
    id: str
    user: str
    product: str
    event_ts: str | datetime
    landed: str | datetime  # _ingested_at
    surface: str = "home_feed"
    position: int = 1


@dataclass(frozen=True)
class Click:
    id: str
    impression: str
    event_ts: str | datetime
    landed: str | datetime


@dataclass(frozen=True)
class Order:
    id: str
    click: str
    event_ts: str | datetime
    landed: str | datetime
    quantity: int
    unit_price: float


DATA_START = day("2026-10-05")  # first valid impression
DATA_END = day("2026-11-14")  # last valid impression: the last feature_date
SNAPSHOTS_LAND = utc("2026-11-14 23:00:00")  # users, merchants, products land once, on the last day

# ==========================================================================================================
# Period A. Story "rolling windows": one shopper, two products of one merchant, three impressions.
#
#   10-05 12:00  u_win sees p_win (beauty), clicks at 12:00:10, orders 2 x 10.00 at 12:05
#   10-05 13:00  u_win sees p_win2 (toys), no click
#   10-06 09:00  u_win sees p_win again, no click
#
# Landing flaws on the way: the click landed twice (12:00:40 and 12:30) and the order landed twice (10-05
# 12:06 and again 10-06 07:00, in the next day's partition): each counts once.
# Windows for day D cover known dates D-6..D (7d) and D-29..D (30d): the 10-05 events are in the 7d
# windows of 10-05..10-11 and the 30d windows of 10-05..11-03; the 10-06 one in 10-06..10-12 and 10-06..11-04.
# ==========================================================================================================
U_WIN = "u0000010"
P_WIN = "p000010"  # beauty
P_WIN2 = "p000011"  # toys
M_WIN = "m00010"

WINDOW_EVENTS = [
    #          id            user   product  event_ts (UTC)          landed (UTC)
    Impression("imp_win_1", U_WIN, P_WIN, "2026-10-05 12:00:00", "2026-10-05 12:01:00"),
    Impression("imp_win_2", U_WIN, P_WIN2, "2026-10-05 13:00:00", "2026-10-05 13:01:00"),
    Impression("imp_win_3", U_WIN, P_WIN, "2026-10-06 09:00:00", "2026-10-06 09:01:00"),
    #     id           impression   event_ts (UTC)          landed (UTC)
    Click("clk_win_1", "imp_win_1", "2026-10-05 12:00:10", "2026-10-05 12:00:40"),
    Click("clk_win_1", "imp_win_1", "2026-10-05 12:00:10", "2026-10-05 12:30:00"),  # same click, again
    #     id           click        event_ts (UTC)          landed (UTC)          qty  unit price
    Order("ord_win_1", "clk_win_1", "2026-10-05 12:05:00", "2026-10-05 12:06:00", 2, 10.0),
    Order("ord_win_1", "clk_win_1", "2026-10-05 12:05:00", "2026-10-06 07:00:00", 2, 10.0),  # same order, again
]
WINDOW_ORDER_GMV = 20.0

# ==========================================================================================================
# Period B. Boundary stories. Each has its own shopper; they all look at p_b (fashion, merchant m_b).
# ==========================================================================================================
P_B = "p000020"
M_B = "m00020"

# Story "before / at / after": u_upd's count moves on 11-08, 11-09 and 11-10. imp_upd_3 happens at exactly
# 11-10 00:00:00, the instant day 11-09's row becomes true: it sees day 11-09, and counts itself on 11-10.
U_UPD = "u0000020"
UPDATE_EVENTS = [
    Impression("imp_upd_1", U_UPD, P_B, "2026-11-08 10:00:00", "2026-11-08 10:01:00"),
    Impression("imp_upd_2", U_UPD, P_B, "2026-11-09 10:00:00", "2026-11-09 10:01:00"),
    Impression("imp_upd_3", U_UPD, P_B, "2026-11-10 00:00:00", "2026-11-10 00:01:00"),
    Impression("imp_upd_4", U_UPD, P_B, "2026-11-10 12:00:00", "2026-11-10 12:01:00"),
]

# Story "midnight": the last microsecond of a day vs the first of the next.
#   imp_mid_1  11-09 23:59:59.999999, landed the same microsecond   -> known 11-09
#   imp_mid_2  11-10 00:00:00.000000, landed 30 s later              -> known 11-10
#   imp_mid_3  11-11 23:59:59.999999, landed 11-12 00:00:04 (normal) -> known 11-12, label day 11-11
U_MID = "u0000021"
MIDNIGHT_EVENTS = [
    Impression("imp_mid_1", U_MID, P_B, "2026-11-09 23:59:59.999999", "2026-11-09 23:59:59.999999"),
    Impression("imp_mid_2", U_MID, P_B, "2026-11-10 00:00:00", "2026-11-10 00:00:30"),
    Impression("imp_mid_3", U_MID, P_B, "2026-11-11 23:59:59.999999", "2026-11-12 00:00:04"),
]

# Story "Jakarta": 11.11 is a campaign day. A shopper in Jakarta (UTC+7) browses at 06:30 and 07:30 local
# time on 11-11, which is 23:30 UTC on 11-10 and 00:30 UTC on 11-11. Every date in the platform is a UTC
# date: the first impression counts on 11-10 and is *not* on the campaign day, the second is.
U_JKT = "u0000022"
JAKARTA_EVENTS = [
    Impression("imp_jkt_1", U_JKT, P_B, jakarta("2026-11-11 06:30:00"), jakarta("2026-11-11 06:31:00")),
    Impression("imp_jkt_2", U_JKT, P_B, jakarta("2026-11-11 07:30:00"), jakarta("2026-11-11 07:31:00")),
]
CAMPAIGN_DAY = day("2026-11-11")

# Story "duplicate": the same impression landed twice, the copy in the next day's partition.
U_DUP = "u0000023"
DUPLICATE_EVENTS = [
    Impression("imp_dup_1", U_DUP, P_B, "2026-11-08 10:00:00", "2026-11-08 10:01:00"),
    Impression("imp_dup_1", U_DUP, P_B, "2026-11-08 10:00:00", "2026-11-09 08:00:00"),  # the same row again
]

# Story "late event": imp_late_1 happened on 11-08 but landed on 11-10 (two days late): it counts on 11-10,
# never on 11-08 or 11-09, so the training row of imp_late_2 (11-09) does not see it.
U_LATE = "u0000024"
LATE_EVENTS = [
    Impression("imp_late_1", U_LATE, P_B, "2026-11-08 15:00:00", "2026-11-10 09:00:00"),
    Impression("imp_late_2", U_LATE, P_B, "2026-11-09 12:00:00", "2026-11-09 12:01:00"),
]

# Story "correction": u_fix's daily rows come from dbt as usual (one impression on 11-08, one on 11-09).
# On 11-12 06:00 a correction job rewrote u_fix's row of 11-08 (see CORRECTIONS below).
U_FIX = "u0000025"
CORRECTION_EVENTS = [
    Impression("imp_fix_1", U_FIX, P_B, "2026-11-08 10:00:00", "2026-11-08 10:01:00"),
    Impression("imp_fix_2", U_FIX, P_B, "2026-11-09 10:00:00", "2026-11-09 10:01:00"),
]

# Story "late daily snapshot": p_lp's price feed and m_lp's merchant snapshot of 11-09 landed two days late,
# on 11-11 08:00 (the 11-10 price landed on time). A feature row of day D may only use a daily snapshot that
# had landed by the end of D, like any event; once it lands, it never overrides a newer snapshot already known.
P_LP = "p000050"  # sports
M_LP = "m00050"
LATE_SNAPSHOT_LANDED = utc("2026-11-11 08:00:00")
PLAN_1111_LANDED = utc("2026-11-11 00:07:30")

# Story "TTL": the data ends on 11-14 (its rows become true 11-15 00:00), then the daily batch stops.
# u_ttl looks at p_ttl (home, merchant m_ttl) on 11-13 and 11-14.
U_TTL = "u0000027"
P_TTL = "p000030"  # home, price 36.00 from 11-13
P_TTL2 = "p000031"  # home, 10.00, never shown: the other half of the category median
M_TTL = "m00030"
TTL_EVENTS = [
    Impression("imp_ttl_1", U_TTL, P_TTL, "2026-11-13 10:00:00", "2026-11-13 10:01:00"),
    Impression("imp_ttl_2", U_TTL, P_TTL, "2026-11-14 09:00:00", "2026-11-14 09:01:00"),
]

# Story "no history yet": u_new signs up on 11-12 at 08:00 and sees p_new (listed 11-12 07:00 by m_win) at
# 10:00. Nothing about either is knowable at 10:00; m_win has years of (quiet) history.
U_NEW = "u0000028"
P_NEW = "p000040"  # garden
NEW_EVENTS = [
    Impression("imp_new_1", U_NEW, P_NEW, "2026-11-12 10:00:00", "2026-11-12 10:01:00"),
]

# Story "live shoppers" (tests/point_in_time/live_story.py): u_live's impressions of p_live and p_live2 are not
# written here but landed by live mode's landing code, with the flush clock as _ingested_at.
U_LIVE = "u0000031"
P_LIVE = "p000061"  # electronics
P_LIVE2 = "p000062"  # electronics
M_LIVE = "m00061"

# Entities that appear nowhere in the data.
U_NOBODY = "u0000099"
P_NOBODY = "p000099"
M_NOBODY = "m00099"
U_BACKFILLED = "u0000026"  # exists only through a backfilled mart row (CORRECTIONS)

ALL_EVENTS = [
    *WINDOW_EVENTS,
    *UPDATE_EVENTS,
    *MIDNIGHT_EVENTS,
    *JAKARTA_EVENTS,
    *DUPLICATE_EVENTS,
    *LATE_EVENTS,
    *CORRECTION_EVENTS,
    *TTL_EVENTS,
    *NEW_EVENTS,
]

# --- dimensions ------------------------------------------------------------------------------------------

SIGNUP = utc("2026-01-01 09:00:00")  # every shopper but u_new
USERS = [
    # user_id  country device     signup_ts
    (U_WIN, "ID", "android", SIGNUP),
    (U_UPD, "ID", "android", SIGNUP),
    (U_MID, "TH", "ios", SIGNUP),
    (U_JKT, "ID", "android", SIGNUP),
    (U_DUP, "VN", "web", SIGNUP),
    (U_LATE, "MY", "android", SIGNUP),
    (U_FIX, "PH", "ios", SIGNUP),
    (U_TTL, "SG", "ios", SIGNUP),
    (U_NEW, "ID", "android", utc("2026-11-12 08:00:00")),
    (U_LIVE, "TH", "android", SIGNUP),
]
MERCHANTS = [
    # merchant_id tier     main category  joined_ts
    (M_WIN, "mall", "beauty", utc("2025-01-01 00:00:00")),
    (M_B, "preferred", "fashion", utc("2026-03-01 00:00:00")),
    (M_TTL, "regular", "home", utc("2025-01-01 00:00:00")),
    (M_LP, "regular", "sports", utc("2025-01-01 00:00:00")),
    (M_LIVE, "regular", "electronics", utc("2025-01-01 00:00:00")),
]
LISTED = utc("2025-06-01 00:00:00")
PRODUCTS = [
    # product_id merchant category  l2          base price  created_ts
    (P_WIN, M_WIN, "beauty", "skincare", 10.0, LISTED),
    (P_WIN2, M_WIN, "toys", "puzzles", 30.0, LISTED),
    (P_B, M_B, "fashion", "dresses", 25.0, utc("2026-02-01 00:00:00")),
    (P_TTL, M_TTL, "home", "kitchen", 40.0, LISTED),
    (P_LP, M_LP, "sports", "rackets", 60.0, LISTED),
    (P_TTL2, M_TTL, "home", "decor", 10.0, LISTED),
    (P_NEW, M_WIN, "garden", "tools", 12.0, utc("2026-11-12 07:00:00")),
    (P_LIVE, M_LIVE, "electronics", "phones", 200.0, LISTED),
    (P_LIVE2, M_LIVE, "electronics", "cables", 8.0, LISTED),
]
PRODUCT_PRICES = [
    # product_id price_date   price discount landed
    (P_WIN, day("2026-10-06"), 8.0, 0.2, utc("2026-10-06 00:01:00")),
    (P_TTL, day("2026-11-13"), 36.0, 0.1, utc("2026-11-13 00:01:00")),
    (P_LP, day("2026-11-08"), 50.0, 0.0, utc("2026-11-08 00:01:00")),
    (P_LP, day("2026-11-09"), 40.0, 0.2, LATE_SNAPSHOT_LANDED),  # two days late
    (P_LP, day("2026-11-10"), 45.0, 0.1, utc("2026-11-10 00:01:00")),
    # 11.11's price list (issue 18, section 4: the campaign plan): half off, landing 7.5 minutes into the day
    (P_WIN2, CAMPAIGN_DAY, 15.0, 0.5, PLAN_1111_LANDED),
]
MERCHANT_DAILY = [
    # merchant_id snapshot_date rating is_live landed
    (M_WIN, day("2026-10-05"), 4.5, True, utc("2026-10-05 00:02:00")),
    (M_WIN, day("2026-10-12"), 4.0, False, utc("2026-10-12 00:02:00")),
    (M_TTL, day("2026-11-10"), 4.0, False, utc("2026-11-10 00:02:00")),
    (M_TTL, day("2026-11-14"), 4.2, True, utc("2026-11-14 00:02:00")),
    (M_LP, day("2026-11-08"), 4.0, False, utc("2026-11-08 00:02:00")),
    (M_LP, day("2026-11-09"), 2.0, True, LATE_SNAPSHOT_LANDED),  # two days late
]
CAMPAIGN_CALENDAR = [
    # calendar_date name  is_mega_sale landed
    (CAMPAIGN_DAY, "11.11", True, utc("2026-10-01 00:00:00")),
]

# --- rows written straight into a mart, after dbt ----------------------------------------------------------
# A correction or backfill job writes feature rows for a past day with a *later* created_timestamp. dbt's
# daily batch never does (its created_timestamp = event_timestamp), so these are appended to the
# user_features parquet by hand, next to dbt's rows, exactly as such a job would.
CORRECTION_CREATED = utc("2026-11-12 06:00:00")
CORRECTIONS = [
    # user_id       feature_date        user_impressions_7d/_30d  (dbt said 1 for u_fix; u_backfilled had no row)
    (U_FIX, day("2026-11-08"), 5),
    (U_BACKFILLED, day("2026-11-08"), 3),
]


# --- writing it all --------------------------------------------------------------------------------------


def build_tables() -> dict[str, list[dict]]:
    impressions = {e.id: e for e in ALL_EVENTS if isinstance(e, Impression)}
    clicks = {e.id: e for e in ALL_EVENTS if isinstance(e, Click)}
    tables: dict[str, list[dict]] = defaultdict(list)
    for user_id, country, device, signup in USERS:
        tables["users"].append(
            {
                "user_id": user_id,
                "country": country,
                "device": device,
                "signup_ts": signup,
                "_ingested_at": SNAPSHOTS_LAND,
            }
        )
    for merchant_id, tier, category, joined in MERCHANTS:
        tables["merchants"].append(
            {
                "merchant_id": merchant_id,
                "country": "ID",
                "tier": tier,
                "main_category_l1": category,
                "joined_ts": joined,
                "_ingested_at": SNAPSHOTS_LAND,
            }
        )
    for product_id, merchant_id, category, category_l2, base_price, created in PRODUCTS:
        tables["products"].append(
            {
                "product_id": product_id,
                "merchant_id": merchant_id,
                "category_l1": category,
                "category_l2": category_l2,
                "base_price": base_price,
                "created_ts": created,
                "_ingested_at": SNAPSHOTS_LAND,
            }
        )
    for product_id, price_date, price, discount, landed in PRODUCT_PRICES:
        tables["product_prices"].append(
            {
                "product_id": product_id,
                "price_date": price_date,
                "price": price,
                "discount_pct": discount,
                "_ingested_at": landed,
            }
        )
    for merchant_id, snapshot_date, rating, is_live, landed in MERCHANT_DAILY:
        tables["merchant_daily"].append(
            {
                "merchant_id": merchant_id,
                "snapshot_date": snapshot_date,
                "rating": rating,
                "is_live": is_live,
                "_ingested_at": landed,
            }
        )
    for calendar_date, name, mega, landed in CAMPAIGN_CALENDAR:
        tables["campaign_calendar"].append(
            {"calendar_date": calendar_date, "campaign_name": name, "is_mega_sale": mega, "_ingested_at": landed}
        )
    for event in ALL_EVENTS:
        if isinstance(event, Impression):
            tables["impressions"].append(
                {
                    "impression_id": event.id,
                    "request_id": f"req_{event.id}",
                    "event_ts": as_instant(event.event_ts),
                    "user_id": event.user,
                    "product_id": event.product,
                    "surface": event.surface,
                    "position": event.position,
                    "_ingested_at": as_instant(event.landed),
                }
            )
        elif isinstance(event, Click):
            shown = impressions[event.impression]
            tables["clicks"].append(
                {
                    "click_id": event.id,
                    "impression_id": shown.id,
                    "event_ts": as_instant(event.event_ts),
                    "user_id": shown.user,
                    "product_id": shown.product,
                    "_ingested_at": as_instant(event.landed),
                }
            )
        else:
            click = clicks[event.click]
            shown = impressions[click.impression]
            tables["orders"].append(
                {
                    "order_id": event.id,
                    "impression_id": shown.id,
                    "click_id": click.id,
                    "event_ts": as_instant(event.event_ts),
                    "user_id": shown.user,
                    "product_id": shown.product,
                    "quantity": event.quantity,
                    "unit_price": event.unit_price,
                    "gmv": event.quantity * event.unit_price,
                    "_ingested_at": as_instant(event.landed),
                }
            )
    return tables


def write_raw_landing_zone(home: Path) -> None:
    """home/raw/<table>/dt=<landing date>/part-00000.parquet, every timestamp timestamp[us, tz=UTC]."""
    for table, rows in build_tables().items():
        by_landing_date: dict[date, list[dict]] = defaultdict(list)
        for row in rows:
            by_landing_date[row["_ingested_at"].astimezone(UTC).date()].append(row)
        for landing_date, partition in sorted(by_landing_date.items()):
            folder = home / "raw" / table / f"dt={landing_date.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(partition, schema=SCHEMAS[table]), folder / "part-00000.parquet")


def append_corrections(marts_dir: Path) -> None:
    """Append CORRECTIONS to the user_features mart: a copy of u_fix's dbt row with the corrected counts."""
    path = marts_dir / "user_features.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    template = next(r for r in rows if r["user_id"] == U_FIX and r["feature_date"] == day("2026-11-08"))
    for user_id, feature_date, impressions in CORRECTIONS:
        became_true = datetime.combine(feature_date + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        rows.append(
            template
            | {
                "user_id": user_id,
                "feature_date": feature_date,
                "event_timestamp": became_true,
                "created_timestamp": CORRECTION_CREATED,
                "user_impressions_7d": impressions,
                "user_impressions_30d": impressions,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
