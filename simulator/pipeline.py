"""The event tables in bounded memory: simulate, land, plant flaws and write, one day at a time.

Pass 1 simulates day by day, numbers events chronologically (`ordering`), lands the impressions and
writes their oracle truth; the landed impressions and the (small) clicks and orders go to a spool.
Clicks and orders land after it, because their lag draws come after every impression's in the one
landing stream. The flaw planner then picks rows from a few bytes per row, and pass 2 streams each
window back, patches in its flaws and writes each landing-date partition once nothing can join it.
Same draws, same order, same sort: the bytes equal those of simulating the period in one piece.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from simulator.campaigns import DAY_US, Days
from simulator.config import SimConfig
from simulator.days import simulate_days
from simulator.entities import SECOND_US, Merchants, Panels, Products, Users, rng_for
from simulator.flaws import NULLABLE, FlawPlan, apply_flaws, plan_flaws
from simulator.landing import EventTable, Lander, land_clicks, land_impressions, land_orders, landing_generator
from simulator.ordering import ChronoOrder
from simulator.spool import Spool
from simulator.traffic import ProgressFn
from simulator.writer import SESSION_TRUTH, PartitionedTable, TruthWriter

EVENT_TABLES = ("impressions", "clicks", "orders")


@dataclass(frozen=True)
class EventStats:
    rows: dict[str, int]  # rows written per event table, flawed rows included
    clean_rows: dict[str, int]
    flaw_counts: dict[str, dict[str, int]]
    ctr: float
    cvr: float
    oracle_auc: float


def simulate_and_land(
    config: SimConfig,
    days: Days,
    world: tuple[Users, Merchants, Products, Panels],
    spool: Spool,
    oracle_dir: Path,
    progress: ProgressFn | None = None,
) -> None:
    """Pass 1 and the landing of clicks and orders: spools `impressions`, `clicks`, `orders` (landed)."""
    users, merchants, products, panels = world
    seed = config.seed
    order = ChronoOrder()
    imp_lander = Lander(config, days.end_us, landing_generator(seed, 0))
    truth = TruthWriter(oracle_dir)
    session_truth = TruthWriter(oracle_dir, SESSION_TRUTH)
    traffic = simulate_days(config, days, users, merchants, products, panels, rng_for(seed, "traffic"), progress)
    for d, day in enumerate(traffic):
        last = d == days.n - 1
        window = order.push(day, None if last else int(days.start_us[d]) + DAY_US)
        landed, truth_rows, session_rows = land_impressions(imp_lander, window.impressions)
        spool.append("impressions", landed.columns)
        truth.add(truth_rows)
        session_truth.add(session_rows)
        spool.append("clicks_raw", window.clicks)
        spool.append("orders_raw", window.orders)
    truth.close()
    session_truth.close()

    clk_lander = Lander(config, days.end_us, landing_generator(seed, order.n_imp))
    ord_lander = Lander(config, days.end_us, landing_generator(seed, order.n_imp + order.n_clk))
    for (_, clks), (_, ords) in zip(spool.windows("clicks_raw"), spool.windows("orders_raw"), strict=True):
        spool.append("clicks", land_clicks(clk_lander, imp_lander.ids, clks).columns)
        spool.append("orders", land_orders(ord_lander, imp_lander.ids, clk_lander.ids, ords).columns)


def _referenced(spool: Spool, table: str, column: str, n: int) -> np.ndarray:
    """Which of `n` parent rows some row of `table` points at (via its 1-based id `column`)."""
    mask = np.zeros(n, dtype=bool)
    for _, cols in spool.windows(table):
        mask[cols[column] - 1] = True
    return mask


def _late_ok(spool: Spool, table: str, end_us: int) -> np.ndarray:
    """Rows whose event leaves a day (and a minute) before the snapshot for a late landing."""
    cutoff = end_us - DAY_US - 60 * SECOND_US
    return np.concatenate([cols["event_ts"] < cutoff for _, cols in spool.windows(table)])


def plan_all(config: SimConfig, days: Days, spool: Spool) -> tuple[dict[str, FlawPlan], np.ndarray]:
    """Each event table's flaw plan (one table's per-row masks at a time), and `clicked` per impression."""
    n = {name: spool.rows(name) for name in EVENT_TABLES}
    clicked = _referenced(spool, "clicks", "impression_id", n["impressions"])
    plans: dict[str, FlawPlan] = {}
    for name in EVENT_TABLES:
        if name == "impressions":
            dependents = clicked
        elif name == "clicks":
            dependents = _referenced(spool, "orders", "click_id", n["clicks"])
        else:
            dependents = np.zeros(n["orders"], dtype=bool)

        def gather(rows: np.ndarray, table: str = name) -> EventTable:
            return EventTable(table, spool.gather(table, rows))

        plans[name] = plan_flaws(
            name,
            n[name],
            config,
            days.end_us,
            dependents,
            _late_ok(spool, name, days.end_us),
            gather,
            rng_for(config.seed, f"flaws/{name}"),
        )
    return plans, clicked


def write_events(raw_dir: Path, days: Days, spool: Spool, plans: dict[str, FlawPlan]) -> dict[str, int]:
    """Pass 2: windows back from the spool, flaws patched in, partitions written as they close."""
    last_day = int(days.start_us[-1] // DAY_US)
    rows: dict[str, int] = {}
    for name in EVENT_TABLES:
        table = PartitionedTable(raw_dir, name, NULLABLE[name])
        for w, (first, cols) in enumerate(spool.windows(name)):
            flawed = apply_flaws(plans[name], EventTable(name, cols), first)
            table.add(flawed.columns, flawed.nulls)
            # window w holds events before the next midnight, and nothing lands before it happens
            table.flush(None if w == days.n - 1 else int(days.start_us[w] // DAY_US))
        rows[name] = table.close(last_day)
    return rows


def _scores(truth_path: Path) -> Iterator[np.ndarray]:
    for batch in pq.ParquetFile(truth_path).iter_batches(batch_size=1 << 20, columns=["p_click"]):
        yield batch.column(0).to_numpy()


def streamed_auc(truth_path: Path, labels: np.ndarray) -> float:
    """`run.roc_auc(labels, p_click)` to the bit, reading the scores in batches.

    Only the positives' distinct scores are held: for each, how many scores are <= it and == it,
    which is what `np.unique`'s cumulative counts give for the mean tied rank.
    """
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    positives: list[np.ndarray] = []
    start = 0
    for scores in _scores(truth_path):
        positives.append(scores[labels[start : start + len(scores)]])
        start += len(scores)
    pos_scores = np.concatenate(positives)
    values = np.unique(pos_scores)
    at_most = np.zeros(len(values) + 1, dtype=np.int64)
    equal = np.zeros(len(values), dtype=np.int64)
    for scores in _scores(truth_path):
        slot = np.searchsorted(values, scores, side="left")
        at_most += np.bincount(slot, minlength=len(values) + 1)
        hit = slot < len(values)
        hit[hit] = values[slot[hit]] == scores[hit]
        equal += np.bincount(slot[hit], minlength=len(values))
    # a score lands in slot j when values[j-1] < score <= values[j]: a prefix sum counts the scores <= values[j]
    mean_rank = np.cumsum(at_most[:-1]) - (equal - 1) / 2.0
    rank_sum = float(mean_rank[np.searchsorted(values, pos_scores)].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def stream_events(
    config: SimConfig,
    days: Days,
    world: tuple[Users, Merchants, Products, Panels],
    raw_dir: Path,
    oracle_dir: Path,
    spool_dir: Path,
    progress: ProgressFn | None = None,
) -> EventStats:
    spool = Spool(spool_dir)
    try:
        simulate_and_land(config, days, world, spool, oracle_dir, progress)
        if progress is not None:
            progress("planting flaws", 0, 0)
        plans, clicked = plan_all(config, days, spool)
        if progress is not None:
            progress("writing parquet", 0, 0)
        rows = write_events(raw_dir, days, spool, plans)
        clean_rows = {name: spool.rows(name) for name in EVENT_TABLES}
    finally:
        spool.close()
    return EventStats(
        rows=rows,
        clean_rows=clean_rows,
        flaw_counts={name: plan.counts for name, plan in plans.items()},
        ctr=float(clicked.mean()) if len(clicked) else 0.0,
        cvr=clean_rows["orders"] / max(clean_rows["clicks"], 1),
        oracle_auc=streamed_auc(oracle_dir / "impression_truth.parquet", clicked),
    )
