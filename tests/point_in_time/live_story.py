"""Story "live shoppers": impressions landed by live mode's own landing code (simulator/live/landing.py).

Live mode stamps `_ingested_at` with the wall clock of the flush that lands an event, lands only what has
happened by then, and keeps what has not happened when a run stops in `oracle/live/pending/` for the next run.
Here the clock is the story's: two runs of `LiveLanding` on hand-made answers (no service, no random draws),
flushed at chosen instants, into the point-in-time world's landing zone before its `dbt build`.

u_live is served three lists of two products (p_live, p_live2: electronics, merchant m_live), period B:

    answer  served (UTC)           slot 1 happens        slot 2 happens        landed by                 known
    A       11-09 10:00:00         11-09 10:00:00        11-09 10:00:02        run 1 flush 11-09 10:00:30  11-09
    B       11-09 23:59:58         11-09 23:59:58.5      11-10 00:00:01.5      slot 1: run 1 flush 11-09 23:59:59  11-09
                                                                            slot 2: in the future when run 1 stops at
                                                                            11-09 23:59:59.5 -> pending -> run 2's
                                                                            first flush, 11-10 00:00:05    11-10
    C       11-10 23:59:50         11-10 23:59:50        11-10 23:59:52        run 2 flush 11-11 00:00:10  11-11

No clicks: period B has none, and one would move the global priors of every product's smoothed rates that
the other stories pin to 0. Flaw rate 0: the quarantine story lists every quarantined row.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from simulator.config import SURFACES, SimConfig
from simulator.live.landing import EVENT_TABLES, AnswerMeta, LiveLanding
from simulator.live.session import Outcome, Served
from simulator.live.world_store import StoredWorld

from .timelines import P_LIVE, P_LIVE2, U_LIVE, utc

# (answer, served at, the two slots' event times); ids follow landing order: imp500000000.. (LIVE_ID_BASE)
RUN_1 = [
    ("A", utc("2026-11-09 10:00:00"), (utc("2026-11-09 10:00:00"), utc("2026-11-09 10:00:02"))),
    ("B", utc("2026-11-09 23:59:58"), (utc("2026-11-09 23:59:58.5"), utc("2026-11-10 00:00:01.5"))),
]
RUN_1_FLUSHES = [utc("2026-11-09 10:00:30"), utc("2026-11-09 23:59:59")]
RUN_1_STOPS = utc("2026-11-09 23:59:59.5")
RUN_2 = [("C", utc("2026-11-10 23:59:50"), (utc("2026-11-10 23:59:50"), utc("2026-11-10 23:59:52")))]
RUN_2_FIRST_FLUSH = utc("2026-11-10 00:00:05")  # before C is served: lands what run 1 left pending
RUN_2_FLUSHES = [utc("2026-11-11 00:00:10")]
RUN_2_STOPS = utc("2026-11-11 00:00:20")

IMPRESSION_IDS = {f"{answer}{slot}": f"imp{500_000_000 + 2 * i + slot - 1:09d}" for i, answer in enumerate("ABC")
                  for slot in (1, 2)}  # fmt: skip


def us(instant: datetime) -> int:
    return int(instant.timestamp()) * 1_000_000 + instant.microsecond


def _row(entity: str) -> int:
    """Live mode's entity rows are 0-based; the landed id is row + 1 (simulator/writer.py ID_FORMATS)."""
    return int(entity[1:]) - 1


def _world() -> StoredWorld:
    """What LiveLanding reads of the stored world: the config (flaw rate) and the historical row counts (ids)."""
    none = cast(Any, None)  # the entity arrays are what sessions draw from; these answers are written by hand
    return StoredWorld(
        config=SimConfig(scale="tiny", flaw_rate=0.0),
        days=none,
        users=none,
        merchants=none,
        products=none,
        last_day=none,
        clean_rows=dict.fromkeys(EVENT_TABLES, 100),
    )


def _answers(answers: list[tuple[str, datetime, tuple[datetime, datetime]]]) -> tuple[Outcome, Served, AnswerMeta]:
    n = len(answers)
    products = np.array([_row(P_LIVE), _row(P_LIVE2)] * n, dtype=np.int64)
    served = Served(
        session=np.arange(n),
        answered_us=np.array([us(at) for _, at, _ in answers], dtype=np.int64),
        offsets=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        product=products,
    )
    empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    outcome = Outcome(
        imp_answer=np.repeat(np.arange(n), 2),
        imp_user=np.full(2 * n, _row(U_LIVE), dtype=np.int64),
        imp_product=products,
        imp_surface=np.full(2 * n, SURFACES.index("home_feed"), dtype=np.int64),
        imp_position=np.tile(np.array([1, 2], dtype=np.int32), n),
        imp_ts=np.array([us(t) for _, _, slots in answers for t in slots], dtype=np.int64),
        p_click=np.full(2 * n, 0.05),
        p_order=np.full(2 * n, 0.1),
        expected_value=np.full(2 * n, 20.0),
        clicked=empty_i,
        clk_ts=empty_i,
        ordered=empty_i,
        ord_ts=empty_i,
        quantity=empty_i,
        unit_price=empty_f,
        list_gmv=np.full(n, 0.19),
        best_gmv=np.full(n, 0.19),
    )
    meta = AnswerMeta(
        request_id=np.array([None] * n, dtype=object),
        experiment_id=[None] * n,
        arm=[None] * n,
        credit=np.array([None] * (2 * n), dtype=object),
    )
    return outcome, served, meta


def land(home: Path) -> dict[str, dict[str, int]]:
    """Both runs into home/raw (and their truth into home/oracle); what each close left pending."""
    raw, oracle = home / "raw", home / "oracle"
    users = np.array([_row(U_LIVE)])
    pending = {}
    first = LiveLanding(raw, oracle, _world(), "story-1", seed=1)
    for answer, flush in zip(RUN_1, RUN_1_FLUSHES, strict=True):
        outcome, served, meta = _answers([answer])
        first.add(outcome, served, meta, users)
        first.flush(us(flush))
    pending["story-1"] = first.close(us(RUN_1_STOPS))
    second = LiveLanding(raw, oracle, _world(), "story-2", seed=2)
    second.flush(us(RUN_2_FIRST_FLUSH))
    for answer, flush in zip(RUN_2, RUN_2_FLUSHES, strict=True):
        outcome, served, meta = _answers([answer])
        second.add(outcome, served, meta, users)
        second.flush(us(flush))
    pending["story-2"] = second.close(us(RUN_2_STOPS))
    return pending
