"""Live shoppers' events (issue 16): landed by live mode with the flush clock as `_ingested_at` and late arrivals
carried over between runs, they become features only when knowable, like any other event.

The story and its clock are in live_story.py; the world fixture lands it through `simulator/live/landing.py`
before the real `dbt build`. u_live's impressions of electronics, by known date (greatest(event_ts, landed)):

    11-09: A1, A2, B1                   -> impressions_7d of day 11-09: 3
    11-10: B2 (happened 00:00:01.5, pending between runs, landed 00:00:05)   -> 4
    11-11: C1, C2 (happened 11-10 23:59:5x, landed by the flush at 11-11 00:00:10)  -> 6
"""

from __future__ import annotations

from datetime import datetime

import pyarrow.parquet as pq

from .expected import MISSING, NO_USER_CATEGORY, assert_rows, user_category_row, user_row
from .live_story import IMPRESSION_IDS, RUN_1, RUN_2
from .timelines import P_LIVE, U_LIVE, day, utc

VIEWS = ("user_features", "user_category_features")


def _landed(world) -> dict[str, tuple[str, datetime, datetime]]:
    """impression_id -> (raw partition, event_ts, _ingested_at) of every row live mode landed."""
    out = {}
    for path in sorted((world.settings.home_dir / "raw" / "impressions").glob("dt=*/part-live-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            out[row["impression_id"]] = (path.parent.name, row["event_ts"], row["_ingested_at"])
    return out


def test_live_mode_lands_what_has_happened_stamped_with_the_flush_clock(world):
    # fmt: off
    expected = {
        # slot  partition        landed (_ingested_at): the flush that found it had happened
        "A1": ("dt=2026-11-09", "2026-11-09 10:00:30"),
        "A2": ("dt=2026-11-09", "2026-11-09 10:00:30"),
        "B1": ("dt=2026-11-09", "2026-11-09 23:59:59"),
        # in the future when run 1 stopped: kept in oracle/live/pending/, landed by run 2's first flush
        "B2": ("dt=2026-11-10", "2026-11-10 00:00:05"),
        # happened before midnight, the flush after it
        "C1": ("dt=2026-11-11", "2026-11-11 00:00:10"),
        "C2": ("dt=2026-11-11", "2026-11-11 00:00:10"),
    }
    # fmt: on
    happened = {f"{a}{i + 1}": t for a, _, slots in RUN_1 + RUN_2 for i, t in enumerate(slots)}
    landed = _landed(world)
    assert set(landed) == set(IMPRESSION_IDS.values())
    for slot, (partition, at) in expected.items():
        assert landed[IMPRESSION_IDS[slot]] == (partition, happened[slot], utc(at)), slot
    assert not (world.settings.oracle_dir / "live" / "pending" / "impressions.parquet").exists()


def test_live_events_become_features_only_when_knowable(world):
    labels = world.labels()
    # fmt: off
    timeline = [
        # training row        timestamp (UTC)              reads day     7d/30d  electronics 30d
        # A1's own label: nothing of u_live is known before (the user row is dense from signup: zeros)
        ("A1",                "2026-11-09 10:00:00",       "2026-11-08", 0,      MISSING),
        # A1 and A2 landed 14 hours earlier, but day 11-09's row only becomes true at 11-10 00:00
        ("B1",                "2026-11-09 23:59:58.5",     "2026-11-08", 0,      MISSING),
        ("B2",                "2026-11-10 00:00:01.5",     "2026-11-09", 3,      3),
        # B2 landed at 00:00:05 of 11-10: in day 11-10's row, true only from 11-11 00:00
        ("C1",                "2026-11-10 23:59:50",       "2026-11-09", 3,      3),
        # C1 and C2 happened on 11-10 but landed on 11-11: not in day 11-10's row
        ("midnight 11-11",    "2026-11-11 00:00:00",       "2026-11-10", 4,      4),
        ("midnight 11-12",    "2026-11-12 00:00:00",       "2026-11-11", 6,      6),
    ]
    # fmt: on
    rows, expected = [], {}
    for name, instant, reads_day, impressions, electronics in timeline:
        if name in IMPRESSION_IDS:  # the impression's own label row, at its own event time
            name = IMPRESSION_IDS[name]
            assert labels.loc[name, "event_timestamp"] == utc(instant), name
        rows.append(
            {"row": name, "at": utc(instant), "user_id": U_LIVE, "product_id": P_LIVE, "category_l1": "electronics"}
        )
        expected[name] = user_row(U_LIVE, day(reads_day), impressions_7d=impressions, impressions_30d=impressions) | (
            NO_USER_CATEGORY if electronics is MISSING else user_category_row(impressions_30d=electronics)
        )
    assert_rows(world.join(rows, VIEWS), expected)


def test_every_live_impression_has_one_label_row(world):
    labels = world.labels()
    live = labels[labels["impression_id"].isin(IMPRESSION_IDS.values())]
    assert sorted(live["impression_id"]) == sorted(IMPRESSION_IDS.values())
    assert (live["user_id"] == U_LIVE).all() and (live["clicked"] == 0).all()
