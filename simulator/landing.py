"""From events to landed rows: ingestion lag, the snapshot cut-off, ids, and the oracle's truth.

The landing zone is a snapshot taken at the end of the period (`end_date` 00:00 UTC): an event that had
not happened, or had not landed, by then is absent, together with the clicks and orders hanging off it,
so the clean data never holds an orphan and every flaw is a planted one.

Landing runs window by window over the chronological stream (`simulator.ordering`). The lags are one
stream of draws: every impression's in row order, then every click's, then every order's; a table's
`Lander` starts its generator where that table's draws begin, so windows give the whole-period values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.config import SimConfig
from simulator.entities import SECOND_US, rng_for

Cols = dict[str, np.ndarray]


@dataclass
class EventTable:
    """Contract columns as numpy arrays (ids as integers, labels as codes) plus null masks."""

    name: str
    columns: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.columns["_ingested_at"])


def landing_generator(seed: int, skip: int) -> np.random.Generator:
    """The landing stream `skip` draws in: each uniform double consumes exactly one PCG64 step."""
    rng = rng_for(seed, "landing")
    bit_generator = rng.bit_generator
    assert isinstance(bit_generator, np.random.PCG64)
    bit_generator.advance(skip)
    return rng


class DenseIds:
    """1-based ids of the landed rows of one table, dense and in row order, looked up by global row.

    Only the rows that did not land are remembered (the last minutes before the snapshot), so a lookup
    needs no per-row state.
    """

    def __init__(self) -> None:
        self.dropped = np.zeros(0, dtype=np.int64)
        self.rows = 0
        self.landed = 0

    def add(self, ok: np.ndarray) -> np.ndarray:
        """Register the next rows; returns their ids (meaningful where `ok`)."""
        ids = self.landed + np.cumsum(ok, dtype=np.int64)
        self.dropped = np.concatenate([self.dropped, self.rows + np.flatnonzero(~ok)])
        self.rows += len(ok)
        self.landed += int(ok.sum())
        return ids

    def lookup(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(landed?, id) of earlier rows."""
        before = np.searchsorted(self.dropped, rows, side="right")
        dropped = (before > 0) & (self.dropped[np.maximum(before - 1, 0)] == rows) if len(self.dropped) else None
        ok = np.ones(len(rows), dtype=bool) if dropped is None else ~dropped
        return ok, rows + 1 - before


class Lander:
    """Lands one table's windows in order, with that table's slice of the lag stream."""

    def __init__(self, config: SimConfig, end_us: int, rng: np.random.Generator) -> None:
        self.bounds = config.params.landing.on_time_lag_s
        self.end_us = end_us
        self.rng = rng
        self.ids = DenseIds()

    def ingest(self, ts: np.ndarray, parent_ok: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ingested_at, landed mask, ids) of the next rows."""
        lag = (self.rng.uniform(*self.bounds, len(ts)) * SECOND_US).astype(np.int64)
        ingested = ts + lag
        ok = ingested < self.end_us
        if parent_ok is not None:
            ok &= parent_ok
        return ingested, ok, self.ids.add(ok)


def land_impressions(lander: Lander, imps: Cols) -> tuple[EventTable, Cols, Cols]:
    """Landed impressions, their oracle truth rows and their session truth rows."""
    ingested, ok, ids = lander.ingest(imps["imp_ts"], None)
    table = EventTable(
        "impressions",
        {
            "impression_id": ids[ok],
            "request_id": imps["imp_request"][ok] + 1,
            "event_ts": imps["imp_ts"][ok],
            "user_id": imps["imp_user"][ok].astype(np.int64) + 1,
            "product_id": imps["imp_product"][ok].astype(np.int64) + 1,
            "surface": imps["imp_surface"][ok],
            "position": imps["imp_position"][ok],
            "_ingested_at": ingested[ok],
        },
    )
    truth = {
        "impression_id": ids[ok],
        "p_click": imps["p_click"][ok],
        "p_order_given_click": imps["p_order"][ok],
        "expected_order_value": imps["expected_order_value"][ok],
    }
    sessions = {
        "impression_id": ids[ok],
        "session_id": imps["imp_session"][ok] + 1,
        "page_in_session": imps["imp_page"][ok],
        "intent_category": imps["imp_intent"][ok],
        "intent_match": imps["imp_intent_match"][ok],
        "session_interest": imps["imp_interest"][ok],
    }
    return table, truth, sessions


def land_clicks(lander: Lander, impressions: DenseIds, clks: Cols) -> EventTable:
    imp_ok, imp_id = impressions.lookup(clks["imp_row"])
    ingested, ok, ids = lander.ingest(clks["clk_ts"], imp_ok)
    return EventTable(
        "clicks",
        {
            "click_id": ids[ok],
            "impression_id": imp_id[ok],
            "event_ts": clks["clk_ts"][ok],
            "user_id": clks["user"][ok].astype(np.int64) + 1,
            "product_id": clks["product"][ok].astype(np.int64) + 1,
            "_ingested_at": ingested[ok],
        },
    )


def land_orders(lander: Lander, impressions: DenseIds, clicks: DenseIds, ords: Cols) -> EventTable:
    clk_ok, clk_id = clicks.lookup(ords["clk_row"])
    ingested, ok, ids = lander.ingest(ords["ord_ts"], clk_ok)
    quantity = ords["quantity"][ok]
    unit_price = ords["unit_price"][ok]
    return EventTable(
        "orders",
        {
            "order_id": ids[ok],
            "impression_id": impressions.lookup(ords["imp_row"][ok])[1],
            "click_id": clk_id[ok],
            "event_ts": ords["ord_ts"][ok],
            "user_id": ords["user"][ok].astype(np.int64) + 1,
            "product_id": ords["product"][ok].astype(np.int64) + 1,
            "quantity": quantity,
            # int x double is exact in IEEE arithmetic, so a reader recomputing it gets the same bits
            "gmv": quantity.astype(np.float64) * unit_price,
            "unit_price": unit_price,
            "_ingested_at": ingested[ok],
        },
    )
