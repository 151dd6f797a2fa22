"""Late data: a late raw event or daily snapshot (dbt's known date) and a late mart row (Feast's
created_timestamp filter).

Different kinds of lateness, different guards:

* a raw event that lands after the day it happened is bucketed on its arrival day by dbt, so no feature row
  older than its arrival contains it; a late price or merchant snapshot likewise;
* a feature row written after the fact (a correction or backfill job) keeps the event_timestamp of the day it
  describes but carries a later created_timestamp; only `filter_by_created_timestamp=True` (training's
  setting) keeps it away from training rows that are earlier than the moment it was written.
"""

from __future__ import annotations

from .expected import (
    NO_USER,
    NO_USER_CATEGORY,
    assert_rows,
    merchant_row,
    product_row,
    user_category_row,
    user_row,
)
from .timelines import (
    CORRECTION_CREATED,
    LATE_SNAPSHOT_LANDED,
    M_LP,
    P_B,
    P_LP,
    U_BACKFILLED,
    U_FIX,
    U_LATE,
    day,
    utc,
)


def test_late_event_counts_on_its_arrival_day_only(world):
    # imp_late_1 happened 11-08 15:00 but landed 11-10 09:00 -> known 11-10
    # imp_late_2 happened 11-09 12:00, on time               -> known 11-09
    # -> impressions by feature_date: 11-08: 0 | 11-09: 1 | 11-10: 2;
    #    the (u_late, fashion) pair's first *known* activity is 11-09, so it has no row for 11-08
    # fmt: off
    timeline = [
        # training row          timestamp (UTC)          reads day     7d/30d  fashion 30d
        ("imp_late_1",          "2026-11-08 15:00:00",   "2026-11-07", 0,      None),
        # the training row of the next day does not see the 11-08 impression: nobody knew of it yet
        ("imp_late_2",          "2026-11-09 12:00:00",   "2026-11-08", 0,      None),
        # it has landed (09:00), but day 11-10's row only becomes true at 11-11 00:00
        ("11-10 noon",          "2026-11-10 12:00:00",   "2026-11-09", 1,      1),
        ("midnight 11-11",      "2026-11-11 00:00:00",   "2026-11-10", 2,      2),
    ]
    # fmt: on
    labels = world.labels()
    rows, expected = [], {}
    for name, instant, reads_day, impressions, fashion in timeline:
        if name.startswith("imp_"):
            assert labels.loc[name, "event_timestamp"] == utc(instant)
        rows.append({"row": name, "at": utc(instant), "user_id": U_LATE, "product_id": P_B, "category_l1": "fashion"})
        expected[name] = user_row(U_LATE, day(reads_day), impressions_7d=impressions, impressions_30d=impressions) | (
            NO_USER_CATEGORY if fashion is None else user_category_row(impressions_30d=fashion)
        )
    assert_rows(world.join(rows, ["user_features", "user_category_features"]), expected)


# The user_features mart after dbt and the correction job (timelines.CORRECTIONS), for feature_date 11-08:
#
#   user_id       event_timestamp    created_timestamp   impressions_7d   written by
#   u_fix         11-09 00:00        11-09 00:00         1                dbt, the daily batch
#   u_fix         11-09 00:00        11-12 06:00         5                the correction job
#   u_backfilled  11-09 00:00        11-12 06:00         3                the correction job (no dbt row at all)
#
# (u_backfilled's row is a copy of u_fix's with another id, so it carries u_fix's country, device and signup.)
# fmt: off
CORRECTION_TIMELINE = [
    # training row                      user          timestamp (UTC)        filtered (training)    unfiltered
    ("imp_fix_2",                       U_FIX,        "2026-11-09 10:00:00", ("2026-11-08", 1),    ("2026-11-08", 5)),
    ("u_fix 11-10 noon",                U_FIX,        "2026-11-10 12:00:00", ("2026-11-09", 2),    ("2026-11-09", 2)),
    ("u_backfilled 11-09 10:00",        U_BACKFILLED, "2026-11-09 10:00:00", None,                 ("2026-11-08", 3)),
    ("u_backfilled 11-10 23:00",        U_BACKFILLED, "2026-11-10 23:00:00", None,                 ("2026-11-08", 3)),
    # after the job ran the row is no longer leaked, but it is past the 2-day TTL: nobody sees it
    ("u_backfilled after the job",      U_BACKFILLED, "2026-11-12 07:00:00", None,                 None),
]
# fmt: on


def _expected(reads: tuple[str, int] | None) -> dict[str, object]:
    if reads is None:
        return NO_USER
    reads_day, impressions = reads
    return user_row(U_FIX, day(reads_day), impressions_7d=impressions, impressions_30d=impressions)


def _join(world, *, filter_by_created_timestamp: bool):
    rows = [{"row": name, "at": utc(instant), "user_id": user} for name, user, instant, _, _ in CORRECTION_TIMELINE]
    return world.join(rows, ["user_features"], filter_by_created_timestamp=filter_by_created_timestamp)


def test_rows_written_after_the_label_are_not_used(world):
    assert utc("2026-11-09 10:00:00") < CORRECTION_CREATED
    expected = {name: _expected(filtered) for name, _, _, filtered, _ in CORRECTION_TIMELINE}
    assert_rows(_join(world, filter_by_created_timestamp=True), expected)


def test_without_the_filter_the_correction_leaks_into_training(world):
    """The control: the same join without the filter hands out values written days after the label."""
    expected = {name: _expected(unfiltered) for name, _, _, _, unfiltered in CORRECTION_TIMELINE}
    assert_rows(_join(world, filter_by_created_timestamp=False), expected)


# fmt: off
LATE_SNAPSHOT_TIMELINE = [
    # p_lp's prices: 11-08 50.00 (on time) | 11-09 40.00 -20% (landed 11-11 08:00) | 11-10 45.00 -10% (on time)
    # m_lp's snapshots: 11-08 rating 4.0 | 11-09 rating 2.0, live (landed 11-11 08:00)
    # training row     timestamp (UTC)         reads day     price  discount  rating  live
    ("11-09 noon",     "2026-11-09 12:00:00",  "2026-11-08", 50.0,  0.0,      4.0,    0),
    # the 11-09 price and snapshot had not landed by the end of 11-09 (nor of 11-10): not in those rows
    ("11-10 noon",     "2026-11-10 12:00:00",  "2026-11-09", 50.0,  0.0,      4.0,    0),
    ("11-11 noon",     "2026-11-11 12:00:00",  "2026-11-10", 45.0,  0.1,      4.0,    0),
    # landed on 11-11: the rating is the newest known one; the 11-09 price is older than 11-10's, so 45 stays
    ("11-12 noon",     "2026-11-12 12:00:00",  "2026-11-11", 45.0,  0.1,      2.0,    0),
]
# fmt: on


def test_late_daily_snapshots_count_from_their_arrival_day(world):
    """Prices and merchant snapshots obey the same known-date rule as events."""
    rows, expected = [], {}
    for name, instant, reads_day, price, discount, rating, live in LATE_SNAPSHOT_TIMELINE:
        rows.append({"row": name, "at": utc(instant), "product_id": P_LP, "merchant_id": M_LP, "category_l1": "sports"})
        expected[name] = product_row(P_LP, day(reads_day), price=price, discount_pct=discount) | merchant_row(
            M_LP, day(reads_day), rating=rating, is_live=live, product_count=1
        )
    assert utc("2026-11-11 08:00:00") == LATE_SNAPSHOT_LANDED
    assert_rows(world.join(rows, ["product_features", "merchant_features"]), expected)
