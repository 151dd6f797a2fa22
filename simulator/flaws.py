"""Production-like flaws planted into the event tables, each one counted for the quarantine to match.

Per event table and per flaw family (null, impossible, late, duplicate), `round(flaw_rate * rows)` rows
are picked, the families on disjoint rows so every flawed row carries exactly one planted flaw. With a
positive rate every kind shows up at least once, so even a tiny run exercises every quarantine rule.
Nulls and impossible values only hit rows nothing depends on (impressions without a click, clicks
without an order), so quarantining them never orphans a clean row and the counts stay exact.

The picks need the whole table at once (one permutation of its rows), but only a few bytes per row:
`plan_flaws` draws them from the row count, the dependents mask and the late-eligible mask, gathers
just the picked rows to rewrite them, and `apply_flaws` patches each window as the writer streams it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


# The permutation is scanned in blocks so the eligibility masks never materialise for all rows at once.
_PICK_BLOCK = 1 << 20


@dataclass(frozen=True)
class FlawPlan:
    """The flawed rows of one table, already rewritten, and where they go."""

    rows: np.ndarray  # sorted global rows of every picked row
    table: EventTable  # those rows after the flaws, nulls included
    duplicated: np.ndarray  # positions in `rows` of the rows that land twice
    counts: dict[str, int]


def _pick(perm: np.ndarray, eligible: np.ndarray, free: np.ndarray, k: int) -> np.ndarray:
    """The first `k` eligible free rows in permutation order (as one filter over `perm` would give)."""
    found: list[np.ndarray] = []
    need = k
    for start in range(0, len(perm), _PICK_BLOCK):
        if need <= 0:
            break
        block = perm[start : start + _PICK_BLOCK]
        rows = block[eligible[block] & free[block]][:need]
        found.append(rows)
        need -= len(rows)
    picked = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    free[picked] = False
    return np.sort(picked)


def plan_flaws(
    name: str,
    n: int,
    config: SimConfig,
    end_us: int,
    has_dependents: np.ndarray,
    late_ok: np.ndarray,
    gather: Callable[[np.ndarray], EventTable],
    rng: np.random.Generator,
    per_family: int | None = None,
) -> FlawPlan:
    """Pick and rewrite the flawed rows of a table of `n` rows; `gather(rows)` reads rows back.

    `late_ok`: rows whose event is at least a day (and a minute) before the snapshot, so a late
    landing still fits before it. `per_family`: rows per flaw family, exactly, instead of
    `round(flaw_rate * n)` raised to one row per kind (live batches are small and many: the minimum
    would flaw most of a handful of orders).
    """
    lp = config.params.landing
    k = round(config.flaw_rate * n)
    nullable, impossible = NULLABLE[name], IMPOSSIBLE[name]

    def quota(n_kinds: int) -> int:
        if per_family is not None:
            return per_family
        return max(k, n_kinds) if config.flaw_rate > 0 else 0

    counts: dict[str, int] = {}
    perm = rng.permutation(n)
    free = np.ones(n, dtype=bool)
    safe = ~has_dependents
    null_rows = _pick(perm, safe, free, quota(len(nullable)))
    bad_rows = _pick(perm, safe, free, quota(len(impossible)))
    late_rows = _pick(perm, late_ok, free, quota(1))
    dup_rows = _pick(perm, np.ones(n, dtype=bool), free, quota(1))
    del perm, free, safe

    rows = np.sort(np.concatenate([null_rows, bad_rows, late_rows, dup_rows]))
    table = gather(rows)
    cols = table.columns
    nulls = {column: np.zeros(len(rows), dtype=bool) for column in nullable}

    def at(picked: np.ndarray) -> np.ndarray:
        return np.searchsorted(rows, picked)

    # round-robin over a shuffle: kinds split evenly, each present once there are enough rows
    which = rng.permutation(np.arange(len(null_rows)) % len(nullable))
    for j, column in enumerate(nullable):
        picked = null_rows[which == j]
        nulls[column][at(picked)] = True
        counts[f"null_{column}"] = len(picked)

    which = rng.permutation(np.arange(len(bad_rows)) % len(impossible))
    for j, kind in enumerate(impossible):
        picked = bad_rows[which == j]
        counts[kind] = len(picked)
        r = at(picked)
        if kind == "bad_position":
            cols["position"][r] = rng.integers(-2, 1, len(r))
        elif kind == "unknown_surface":
            cols["surface"][r] = 4 + rng.integers(0, len(UNKNOWN_SURFACES), len(r))
        elif kind == "future_event_ts":
            skew_s = rng.uniform(lp.future_skew_h[0] * 3600, lp.future_skew_h[1] * 3600, len(r))
            cols["event_ts"][r] = cols["_ingested_at"][r] + (skew_s * SECOND_US).astype(np.int64)
        elif kind == "orphan_impression":
            cols["impression_id"][r] = ORPHAN_ID_BASE + rng.integers(0, 99_999_999, len(r))
        elif kind == "bad_quantity":
            # quantity 0 with gmv 0 keeps gmv = quantity x unit_price, so the row fails one rule only
            cols["quantity"][r] = 0
            cols["gmv"][r] = 0.0
        elif kind == "negative_gmv":
            cols["gmv"][r] = -cols["gmv"][r]
        elif kind == "gmv_mismatch":
            cols["gmv"][r] = np.round(cols["gmv"][r] * rng.uniform(1.1, 1.6, len(r)), 2)

    r = at(late_rows)
    ts = cols["event_ts"][r]
    room_days = (end_us - SECOND_US - ts) / DAY_US
    lag_days = rng.uniform(lp.late_lag_days[0], np.minimum(lp.late_lag_days[1], room_days))
    cols["_ingested_at"][r] = ts + (lag_days * DAY_US).astype(np.int64)
    counts["late"] = len(late_rows)
    counts["duplicate"] = len(dup_rows)
    return FlawPlan(rows, EventTable(name, cols, nulls), at(dup_rows), counts)


def apply_flaws(plan: FlawPlan, window: EventTable, first_row: int) -> EventTable:
    """A window of clean rows (global rows from `first_row`) with its planted flaws and duplicates."""
    lo, hi = np.searchsorted(plan.rows, [first_row, first_row + window.n])
    local = plan.rows[lo:hi] - first_row
    cols = {name: values.copy() for name, values in window.columns.items()}
    for name, values in cols.items():
        values[local] = plan.table.columns[name][lo:hi]
    nulls = {}
    for name, mask in plan.table.nulls.items():
        nulls[name] = np.zeros(window.n, dtype=bool)
        nulls[name][local] = mask[lo:hi]
    # exact copies landing twice; appended rows are sorted into place by the writer
    dup = plan.rows[plan.duplicated[(plan.duplicated >= lo) & (plan.duplicated < hi)]] - first_row
    cols = {name: np.concatenate([values, values[dup]]) for name, values in cols.items()}
    nulls = {name: np.concatenate([mask, mask[dup]]) for name, mask in nulls.items()}
    return EventTable(window.name, cols, nulls)
