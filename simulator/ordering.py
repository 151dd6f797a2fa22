"""Chronological row numbers for a stream of simulated days, handed out one window (a UTC day) at a time.

Impressions are numbered by (event_ts, request, position), clicks by (event_ts, impression row) and
orders by (event_ts, click row): exactly what sorting the whole period at once would give. Everything
simulated on a later day happens on or after that day's midnight, so once day d is simulated, every
event before the next midnight is final. The rest (impressions spilling past midnight, clicks and
orders up to two days later) waits in a carry whose size does not depend on the length of the period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.traffic import DayEvents

Cols = dict[str, np.ndarray]

IMPRESSION_KEYS = (
    "imp_ts",
    "imp_request",
    "imp_user",
    "imp_product",
    "imp_surface",
    "imp_position",
    "p_click",
    "p_order",
    "expected_order_value",
    # the session context, for the oracle's session truth (`simulator.sessions`)
    "imp_session",
    "imp_page",
    "imp_intent",
    "imp_intent_match",
    "imp_interest",
)


@dataclass(frozen=True)
class Window:
    """One window's events in global order; `*_row` columns are global 0-based row numbers."""

    impressions: Cols  # IMPRESSION_KEYS
    clicks: Cols  # clk_ts, imp_row, user, product
    orders: Cols  # ord_ts, clk_row, imp_row, user, product, quantity, unit_price


def _take(cols: Cols, idx: np.ndarray) -> Cols:
    return {k: v[idx] for k, v in cols.items()}


def _append(carry: Cols, new: Cols) -> Cols:
    return {k: np.concatenate([carry[k], new[k]]) for k in new} if carry else new


def _split(cols: Cols, ts_key: str, boundary: int | None) -> tuple[Cols, Cols]:
    """(rows before the boundary, rows kept for later); no boundary: everything goes out."""
    if boundary is None:
        return cols, _take(cols, np.zeros(0, dtype=np.int64))
    early = cols[ts_key] < boundary
    return _take(cols, np.flatnonzero(early)), _take(cols, np.flatnonzero(~early))


def _resolve(pending: Cols, key: str, emitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pending rows whose parent (by generation number `key`) was just emitted, and the parent's position."""
    if len(emitted) == 0 or len(pending[key]) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    by_gen = np.argsort(emitted, kind="stable")
    pos = np.minimum(np.searchsorted(emitted[by_gen], pending[key]), len(emitted) - 1)
    hit = np.flatnonzero(emitted[by_gen][pos] == pending[key])
    return hit, by_gen[pos[hit]]


class ChronoOrder:
    """Feed it days in order with `push`; each call returns the window that became final."""

    def __init__(self) -> None:
        self.imps: Cols = {}
        self.clks: Cols = {}
        self.ords: Cols = {}
        # generation numbers: a parent's identity before its global row is known
        self.gen_imp = 0
        self.gen_clk = 0
        self.n_imp = 0
        self.n_clk = 0
        self.n_ord = 0

    def push(self, day: DayEvents, boundary: int | None) -> Window:
        """Add one simulated day; emit every event before `boundary` (None for the last day)."""
        n_i, n_c, n_o = len(day["imp_ts"]), len(day["clk_ts"]), len(day["ord_ts"])
        clk_imp, ord_clk = day["clk_imp"], day["ord_clk"]
        ord_imp = clk_imp[ord_clk]
        self.imps = _append(
            self.imps,
            {k: day[k] for k in IMPRESSION_KEYS} | {"gen": self.gen_imp + np.arange(n_i, dtype=np.int64)},
        )
        self.clks = _append(
            self.clks,
            {
                "clk_ts": day["clk_ts"],
                "imp_gen": self.gen_imp + clk_imp.astype(np.int64),
                "gen": self.gen_clk + np.arange(n_c, dtype=np.int64),
                "imp_row": np.full(n_c, -1, dtype=np.int64),
                "user": day["imp_user"][clk_imp],
                "product": day["imp_product"][clk_imp],
            },
        )
        self.ords = _append(
            self.ords,
            {
                "ord_ts": day["ord_ts"],
                "clk_gen": self.gen_clk + ord_clk.astype(np.int64),
                "clk_row": np.full(n_o, -1, dtype=np.int64),
                "imp_row": np.full(n_o, -1, dtype=np.int64),
                "user": day["imp_user"][ord_imp],
                "product": day["imp_product"][ord_imp],
                "quantity": day["ord_quantity"],
                "unit_price": day["ord_unit_price"],
            },
        )
        self.gen_imp += n_i
        self.gen_clk += n_c

        imps, self.imps = _split(self.imps, "imp_ts", boundary)
        imps = _take(imps, np.lexsort((imps["imp_position"], imps["imp_request"], imps["imp_ts"])))
        rows = self.n_imp + np.arange(len(imps["imp_ts"]), dtype=np.int64)
        hit, parent = _resolve(self.clks, "imp_gen", imps["gen"])
        self.clks["imp_row"][hit] = rows[parent]
        self.n_imp += len(rows)

        clks, self.clks = _split(self.clks, "clk_ts", boundary)
        # a click never precedes its impression, so every parent row is known by now
        if (clks["imp_row"] < 0).any():
            raise RuntimeError("a click came before its impression was written")
        clks = _take(clks, np.lexsort((clks["imp_row"], clks["clk_ts"])))
        rows = self.n_clk + np.arange(len(clks["clk_ts"]), dtype=np.int64)
        hit, parent = _resolve(self.ords, "clk_gen", clks["gen"])
        self.ords["clk_row"][hit] = rows[parent]
        self.ords["imp_row"][hit] = clks["imp_row"][parent]
        self.n_clk += len(rows)

        ords, self.ords = _split(self.ords, "ord_ts", boundary)
        if (ords["clk_row"] < 0).any():
            raise RuntimeError("an order came before its click was written")
        ords = _take(ords, np.lexsort((ords["clk_row"], ords["ord_ts"])))
        self.n_ord += len(ords["ord_ts"])
        return Window(
            impressions={k: imps[k] for k in IMPRESSION_KEYS},
            clicks={k: clks[k] for k in ("clk_ts", "imp_row", "user", "product")},
            orders={k: ords[k] for k in ("ord_ts", "clk_row", "imp_row", "user", "product", "quantity", "unit_price")},
        )
