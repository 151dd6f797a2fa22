"""Period B: which day an event counts on, and which feature row a training row at a given instant reads.

The rule (docs/time_semantics.md): an event counts on its known date, the UTC date of
greatest(event_ts, _ingested_at); day D's row becomes true at D+1 00:00:00 UTC, and Feast's join takes the
latest row with event_timestamp <= the training row's timestamp (equal included). So a training row at
exactly D+1 00:00 reads day D, and one microsecond earlier reads day D-1. A day-D row never contains an
event of D+1 00:00 or later, so a label can never see itself.

Each test requests user_features and user_category_features for one shopper (with the category of p_b,
fashion) and compares every value. User rows are dense from signup, so a quiet day reads as zeros; a
user x category pair has rows only from its first known activity, so before it the pair is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq

from .expected import MISSING, NO_USER_CATEGORY, assert_rows, user_category_row, user_row
from .timelines import CAMPAIGN_DAY, P_B, U_DUP, U_JKT, U_MID, U_UPD, day, utc

VIEWS = ("user_features", "user_category_features")


def check_story(world, user: str, timeline: list[tuple[str, str, str, int, int | None]]) -> None:
    """timeline rows: (training row, its timestamp UTC, day it must read, impressions 7d = 30d, fashion 30d).

    A training row named imp_* is the impression's own label row (its timestamp is checked against the
    impression_labels mart); any other name is a probe at that instant.
    """
    labels = world.labels()
    rows, expected = [], {}
    for name, instant, reads_day, impressions, fashion in timeline:
        if name.startswith("imp_"):
            assert labels.loc[name, "event_timestamp"] == utc(instant), name
        rows.append({"row": name, "at": utc(instant), "user_id": user, "product_id": P_B, "category_l1": "fashion"})
        expected[name] = user_row(user, day(reads_day), impressions_7d=impressions, impressions_30d=impressions) | (
            NO_USER_CATEGORY if fashion is MISSING else user_category_row(impressions_30d=fashion)
        )
    assert_rows(world.join(rows, VIEWS), expected)


def test_value_updated_before_exactly_at_and_after_the_label(world):
    # u_upd's impressions (each known the day it happened): 11-08 10:00, 11-09 10:00, 11-10 00:00:00, 11-10 12:00
    # -> impressions_7d by feature_date: 11-07: 0 | 11-08: 1 | 11-09: 2 | 11-10: 4
    # fmt: off
    check_story(world, U_UPD, [
        # training row              timestamp (UTC)               reads day     7d/30d  fashion 30d
        ("imp_upd_1",               "2026-11-08 10:00:00",        "2026-11-07", 0,      MISSING),
        ("imp_upd_2",               "2026-11-09 10:00:00",        "2026-11-08", 1,      1),
        ("1 us before midnight",    "2026-11-09 23:59:59.999999", "2026-11-08", 1,      1),
        # event_timestamp of day 11-09's row == this label's timestamp: visible (the join uses <=)
        ("imp_upd_3",               "2026-11-10 00:00:00",        "2026-11-09", 2,      2),
        ("1 us after midnight",     "2026-11-10 00:00:00.000001", "2026-11-09", 2,      2),
        # imp_upd_3 happened 12 h earlier, but day 11-10's row only becomes true at 11-11 00:00
        ("imp_upd_4",               "2026-11-10 12:00:00",        "2026-11-09", 2,      2),
        ("next midnight",           "2026-11-11 00:00:00",        "2026-11-10", 4,      4),
    ])
    # fmt: on


def test_last_microsecond_of_a_day_and_first_of_the_next(world):
    # imp_mid_1 11-09 23:59:59.999999 landed the same microsecond -> known 11-09
    # imp_mid_2 11-10 00:00:00.000000 landed 30 s later           -> known 11-10
    # imp_mid_3 11-11 23:59:59.999999 landed 11-12 00:00:04       -> known 11-12 (its label stays on 11-11)
    # -> impressions_7d by feature_date: 11-08: 0 | 11-09: 1 | 11-10: 2 | 11-11: 2 | 11-12: 3
    # fmt: off
    check_story(world, U_MID, [
        ("imp_mid_1",               "2026-11-09 23:59:59.999999", "2026-11-08", 0,      MISSING),
        ("imp_mid_2",               "2026-11-10 00:00:00",        "2026-11-09", 1,      1),
        ("imp_mid_3",               "2026-11-11 23:59:59.999999", "2026-11-10", 2,      2),
        ("midnight 11-12",          "2026-11-12 00:00:00",        "2026-11-11", 2,      2),
        ("midnight 11-13",          "2026-11-13 00:00:00",        "2026-11-12", 3,      3),
    ])
    # fmt: on


def test_local_time_counts_on_its_utc_day(world):
    # imp_jkt_1 11-11 06:30 in Jakarta = 11-10 23:30 UTC -> known 11-10
    # imp_jkt_2 11-11 07:30 in Jakarta = 11-11 00:30 UTC -> known 11-11
    # fmt: off
    check_story(world, U_JKT, [
        ("imp_jkt_1",               "2026-11-10 23:30:00",        "2026-11-09", 0,      MISSING),
        ("imp_jkt_2",               "2026-11-11 00:30:00",        "2026-11-10", 1,      1),
        ("midnight 11-12",          "2026-11-12 00:00:00",        "2026-11-11", 2,      2),
    ])
    # fmt: on


def test_a_duplicate_counts_once(world):
    # imp_dup_1 11-08 10:00 landed at 10:01 and the same row again on 11-09 08:00: if the copy counted, day
    # 11-09 would read 2
    # fmt: off
    check_story(world, U_DUP, [
        ("imp_dup_1",               "2026-11-08 10:00:00",        "2026-11-07", 0,      MISSING),
        ("11-09 noon",              "2026-11-09 12:00:00",        "2026-11-08", 1,      1),
        ("midnight 11-10",          "2026-11-10 00:00:00",        "2026-11-09", 1,      1),
    ])
    # fmt: on


def test_label_rows_keep_the_event_time_on_utc_dates(world):
    """impression_labels: one row per impression, dated and hour-stamped in UTC, on the UTC campaign day."""
    columns = ["event_timestamp", "feature_date", "hour_of_day", "is_campaign_day", "campaign_name",
               "clicked", "converted", "order_gmv"]  # fmt: skip
    # fmt: off
    expected = {
        # impression    event_timestamp (UTC)                 feature_date  hour  campaign    clicked conv. gmv
        "imp_mid_1":  (utc("2026-11-09 23:59:59.999999"), day("2026-11-09"), 23, 0, "none",   0, 0, 0.0),
        "imp_mid_2":  (utc("2026-11-10 00:00:00"),        day("2026-11-10"), 0,  0, "none",   0, 0, 0.0),
        "imp_mid_3":  (utc("2026-11-11 23:59:59.999999"), day("2026-11-11"), 23, 1, "11.11",  0, 0, 0.0),
        # Jakarta: the shopper's 11.11 morning; 11.11 is a UTC calendar date, 06:30 local is still 11-10 in UTC
        "imp_jkt_1":  (utc("2026-11-10 23:30:00"),        day("2026-11-10"), 23, 0, "none",   0, 0, 0.0),
        "imp_jkt_2":  (utc("2026-11-11 00:30:00"),        day("2026-11-11"), 0,  1, "11.11",  0, 0, 0.0),
        # a late impression keeps its own time in the label table
        "imp_late_1": (utc("2026-11-08 15:00:00"),        day("2026-11-08"), 15, 0, "none",   0, 0, 0.0),
        # landed twice: one row; its click and order landed twice too: clicked once, GMV 20 not 40
        "imp_dup_1":  (utc("2026-11-08 10:00:00"),        day("2026-11-08"), 10, 0, "none",   0, 0, 0.0),
        "imp_win_1":  (utc("2026-10-05 12:00:00"),        day("2026-10-05"), 12, 0, "none",   1, 1, 20.0),
    }
    # fmt: on
    assert day("2026-11-11") == CAMPAIGN_DAY
    mart = pq.read_table(world.marts_dir / "impression_labels.parquet").to_pylist()
    by_id = {row["impression_id"]: row for row in mart}
    assert len(by_id) == len(mart), "one label row per impression"
    actual = {iid: tuple(by_id[iid][c] for c in columns) for iid in expected}
    assert actual == expected


def test_duplicates_are_quarantined_not_counted(world):
    with duckdb.connect(str(world.settings.warehouse_path), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        rows = con.execute(
            "select source_table, record_id, reason, _ingested_at from quarantine_events order by all"
        ).fetchall()
    assert rows == [
        ("clicks", "clk_win_1", "duplicate", datetime(2026, 10, 5, 12, 30, tzinfo=UTC)),
        ("impressions", "imp_dup_1", "duplicate", datetime(2026, 11, 9, 8, 0, tzinfo=UTC)),
        ("orders", "ord_win_1", "duplicate", datetime(2026, 10, 6, 7, 0, tzinfo=UTC)),
    ]
