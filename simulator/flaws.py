"""Production-like flaws planted into the event tables, each one counted for the quarantine to match.

Per event table and per flaw family (null, impossible, late, duplicate), `round(flaw_rate * rows)` rows
are picked, the families on disjoint rows so every flawed row carries exactly one planted flaw. With a
positive rate every kind shows up at least once, so even a tiny run exercises every quarantine rule.
Nulls and impossible values only hit rows nothing depends on (impressions without a click, clicks
without an order), so quarantining them never orphans a clean row and the counts stay exact.
"""

from __future__ import annotations

import numpy as np

from simulator.campaigns import DAY_US
from simulator.config import SimConfig
from simulator.entities import SECOND_US
from simulator.landing import EventTable

NULLABLE: dict[str, tuple[str, ...]] = {
    "impressions": ("user_id", "product_id", "event_ts", "surface"),
    "clicks": ("user_id", "product_id", "event_ts"),
    "orders": ("user_id", "product_id", "event_ts"),
}
IMPOSSIBLE: dict[str, tuple[str, ...]] = {
    "impressions": ("bad_position", "unknown_surface", "future_event_ts"),
    "clicks": ("future_event_ts", "orphan_impression"),
    "orders": ("bad_quantity", "negative_gmv", "gmv_mismatch", "future_event_ts", "orphan_impression"),
}
# Codes past the four real surfaces; the writer labels them with these strings.
UNKNOWN_SURFACES: tuple[str, ...] = ("unknown", "feed_v2")
# Orphans point at impression ids far past any real one (real ids are dense from 1).
ORPHAN_ID_BASE = 900_000_000


def _pick(perm: np.ndarray, eligible: np.ndarray, free: np.ndarray, k: int) -> np.ndarray:
    rows = perm[eligible[perm] & free[perm]][:k]
    free[rows] = False
    return np.sort(rows)


def inject_flaws(
    table: EventTable,
    config: SimConfig,
    end_us: int,
    has_dependents: np.ndarray,
    rng: np.random.Generator,
) -> tuple[EventTable, dict[str, int]]:
    """The table with flaws planted (a new object) and the count of each flaw kind."""
    lp = config.params.landing
    n = table.n
    k = round(config.flaw_rate * n)
    nullable, impossible = NULLABLE[table.name], IMPOSSIBLE[table.name]

    def quota(n_kinds: int) -> int:
        return max(k, n_kinds) if config.flaw_rate > 0 else 0

    cols = {name: values.copy() for name, values in table.columns.items()}
    nulls = {name: np.zeros(n, dtype=bool) for name in nullable}
    counts: dict[str, int] = {}

    perm = rng.permutation(n)
    free = np.ones(n, dtype=bool)
    safe = ~has_dependents
    null_rows = _pick(perm, safe, free, quota(len(nullable)))
    bad_rows = _pick(perm, safe, free, quota(len(impossible)))
    # a late row must still land before the snapshot: it needs at least a day of room
    late_ok = cols["event_ts"] < end_us - DAY_US - 60 * SECOND_US
    late_rows = _pick(perm, late_ok, free, quota(1))
    dup_rows = _pick(perm, np.ones(n, dtype=bool), free, quota(1))

    # round-robin over a shuffle: kinds split evenly, each present once there are enough rows
    which = rng.permutation(np.arange(len(null_rows)) % len(nullable))
    for j, column in enumerate(nullable):
        rows = null_rows[which == j]
        nulls[column][rows] = True
        counts[f"null_{column}"] = len(rows)

    which = rng.permutation(np.arange(len(bad_rows)) % len(impossible))
    for j, kind in enumerate(impossible):
        rows = bad_rows[which == j]
        counts[kind] = len(rows)
        if kind == "bad_position":
            cols["position"][rows] = rng.integers(-2, 1, len(rows))
        elif kind == "unknown_surface":
            cols["surface"][rows] = 4 + rng.integers(0, len(UNKNOWN_SURFACES), len(rows))
        elif kind == "future_event_ts":
            skew_s = rng.uniform(lp.future_skew_h[0] * 3600, lp.future_skew_h[1] * 3600, len(rows))
            cols["event_ts"][rows] = cols["_ingested_at"][rows] + (skew_s * SECOND_US).astype(np.int64)
        elif kind == "orphan_impression":
            cols["impression_id"][rows] = ORPHAN_ID_BASE + rng.integers(0, 99_999_999, len(rows))
        elif kind == "bad_quantity":
            # quantity 0 with gmv 0 keeps gmv = quantity x unit_price, so the row fails one rule only
            cols["quantity"][rows] = 0
            cols["gmv"][rows] = 0.0
        elif kind == "negative_gmv":
            cols["gmv"][rows] = -cols["gmv"][rows]
        elif kind == "gmv_mismatch":
            cols["gmv"][rows] = np.round(cols["gmv"][rows] * rng.uniform(1.1, 1.6, len(rows)), 2)

    ts = cols["event_ts"][late_rows]
    room_days = (end_us - SECOND_US - ts) / DAY_US
    lag_days = rng.uniform(lp.late_lag_days[0], np.minimum(lp.late_lag_days[1], room_days))
    cols["_ingested_at"][late_rows] = ts + (lag_days * DAY_US).astype(np.int64)
    counts["late"] = len(late_rows)

    # exact copies landing twice; appended rows are sorted into place by the writer
    counts["duplicate"] = len(dup_rows)
    cols = {name: np.concatenate([values, values[dup_rows]]) for name, values in cols.items()}
    nulls = {name: np.concatenate([mask, mask[dup_rows]]) for name, mask in nulls.items()}
    return EventTable(table.name, cols, nulls), counts
