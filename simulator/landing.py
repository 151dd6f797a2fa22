"""From events to landed rows: ingestion lag, the snapshot cut-off, ids, and the oracle's truth.

The landing zone is a snapshot taken at the end of the period (`end_date` 00:00 UTC): an event that had
not happened, or had not landed, by then is absent, together with the clicks and orders hanging off it,
so the clean data never holds an orphan and every flaw is a planted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.campaigns import Days
from simulator.config import SimConfig
from simulator.entities import SECOND_US
from simulator.traffic import Events


@dataclass
class EventTable:
    """Contract columns as numpy arrays (ids as integers, labels as codes) plus null masks."""

    name: str
    columns: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.columns["_ingested_at"])


@dataclass(frozen=True)
class Landed:
    impressions: EventTable
    clicks: EventTable
    orders: EventTable
    truth: dict[str, np.ndarray]  # oracle/impression_truth columns
    clicked: np.ndarray  # per landed impression: did a landed click follow it
    click_has_order: np.ndarray


def _lag(rng: np.random.Generator, n: int, bounds_s: tuple[float, float]) -> np.ndarray:
    return (rng.uniform(*bounds_s, n) * SECOND_US).astype(np.int64)


def _ids(keep: np.ndarray) -> np.ndarray:
    """1-based ids of the kept rows, dense and in the original (chronological) order."""
    return np.cumsum(keep).astype(np.int64)


def land(config: SimConfig, days: Days, events: Events, rng: np.random.Generator) -> Landed:
    lag = config.params.landing.on_time_lag_s
    end = days.end_us
    imp_ing = events.imp_ts + _lag(rng, len(events.imp_ts), lag)
    clk_ing = events.clk_ts + _lag(rng, len(events.clk_ts), lag)
    ord_ing = events.ord_ts + _lag(rng, len(events.ord_ts), lag)
    imp_ok = imp_ing < end
    clk_ok = (clk_ing < end) & imp_ok[events.clk_imp]
    ord_ok = (ord_ing < end) & clk_ok[events.ord_clk]

    imp_id = _ids(imp_ok)
    clk_id = _ids(clk_ok)
    clk_imp = events.clk_imp[clk_ok]
    ord_clk = events.ord_clk[ord_ok]
    ord_imp = events.clk_imp[ord_clk]

    impressions = EventTable(
        "impressions",
        {
            "impression_id": imp_id[imp_ok],
            "request_id": events.imp_request[imp_ok] + 1,
            "event_ts": events.imp_ts[imp_ok],
            "user_id": events.imp_user[imp_ok].astype(np.int64) + 1,
            "product_id": events.imp_product[imp_ok].astype(np.int64) + 1,
            "surface": events.imp_surface[imp_ok],
            "position": events.imp_position[imp_ok],
            "_ingested_at": imp_ing[imp_ok],
        },
    )
    clicks = EventTable(
        "clicks",
        {
            "click_id": clk_id[clk_ok],
            "impression_id": imp_id[clk_imp],
            "event_ts": events.clk_ts[clk_ok],
            "user_id": events.imp_user[clk_imp].astype(np.int64) + 1,
            "product_id": events.imp_product[clk_imp].astype(np.int64) + 1,
            "_ingested_at": clk_ing[clk_ok],
        },
    )
    quantity = events.ord_quantity[ord_ok]
    unit_price = events.ord_unit_price[ord_ok]
    orders = EventTable(
        "orders",
        {
            "order_id": np.arange(1, int(ord_ok.sum()) + 1, dtype=np.int64),
            "impression_id": imp_id[ord_imp],
            "click_id": clk_id[ord_clk],
            "event_ts": events.ord_ts[ord_ok],
            "user_id": events.imp_user[ord_imp].astype(np.int64) + 1,
            "product_id": events.imp_product[ord_imp].astype(np.int64) + 1,
            "quantity": quantity,
            # int x double is exact in IEEE arithmetic, so a reader recomputing it gets the same bits
            "gmv": quantity.astype(np.float64) * unit_price,
            "unit_price": unit_price,
            "_ingested_at": ord_ing[ord_ok],
        },
    )
    n_imp = int(imp_ok.sum())
    landed_clk_rows = imp_id[clk_imp] - 1
    clicked = np.zeros(n_imp, dtype=bool)
    clicked[landed_clk_rows] = True
    click_has_order = np.zeros(int(clk_ok.sum()), dtype=bool)
    click_has_order[clk_id[ord_clk] - 1] = True
    truth = {
        "impression_id": imp_id[imp_ok],
        "p_click": events.p_click[imp_ok],
        "p_order_given_click": events.p_order[imp_ok],
        "expected_order_value": events.expected_order_value[imp_ok],
    }
    return Landed(
        impressions=impressions,
        clicks=clicks,
        orders=orders,
        truth=truth,
        clicked=clicked,
        click_has_order=click_has_order,
    )
