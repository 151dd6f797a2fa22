"""What live shoppers did, landed where production logs land, and the oracle's truth of what was served.

Events wait in a ledger until they have happened (an order comes minutes after its click) and land at the
next flush with `_ingested_at` = the wall clock of that flush, through the historical flaw code. With an event
stream (issue 17), events are published as they happen, on a short tick (`publish`), the way a marketplace's
services put them on the bus; the landing zone, like a lake fed from that bus, gets the same rows (flaws and
`_ingested_at` = the tick's clock included) at the next flush. Ids come
from a range no historical table reaches (`LIVE_ID_BASE`, checked against the world's landed rows) and a
counter under `oracle/live/` shared by every run. Events still in the future when a run stops are kept in
`oracle/live/pending/` (the simulator's knowledge, not the platform's) and land in a later run's flushes.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from platform_common.event_stream import EventStream, raw_events
from platform_common.settings import LIVE_WATERMARK_DIR
from simulator.entities import SECOND_US, rng_for
from simulator.flaws import apply_flaws, plan_flaws
from simulator.landing import EventTable
from simulator.live.session import Outcome, Served
from simulator.live.world_store import StoredWorld
from simulator.writer import ID_FORMATS, LABELS, ORACLE_SCHEMA, SCHEMAS, SORT_KEYS, to_arrow

EVENT_TABLES = ("impressions", "clicks", "orders")
ID_COLUMNS = {"impressions": "impression_id", "clicks": "click_id", "orders": "order_id", "requests": "request_id"}
# Above every historical id (the large scale lands ~22M rows a table) and below the planted orphans' 900M.
LIVE_ID_BASE = 500_000_000
LIVE_ID_END = 900_000_000

Cols = dict[str, np.ndarray]


class LiveBusy(RuntimeError):
    pass


def live_dir(oracle_dir: Path) -> Path:
    return oracle_dir / "live"


@contextmanager
def exclusive_run(oracle_dir: Path) -> Iterator[None]:
    """One live run per home at a time: two would land the same pending events twice."""
    folder = live_dir(oracle_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "run.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LiveBusy(f"another live run holds {folder / 'run.lock'}") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class IdCounter:
    """Next free live id per id column, in `oracle/live/ids.json` (wiped with the oracle by `make data`)."""

    def __init__(self, oracle_dir: Path, world: StoredWorld) -> None:
        self.path = live_dir(oracle_dir) / "ids.json"
        highest = max(world.clean_rows.values(), default=0)
        if highest >= LIVE_ID_BASE:
            raise ValueError(f"historical ids reach {highest}: the live id range starts at {LIVE_ID_BASE}")

    def take(self, column: str, n: int) -> int:
        """Reserve `n` ids; returns the first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.path.read_text()) if self.path.exists() else {}
            first = int(state.get(column, LIVE_ID_BASE))
            if first + n > LIVE_ID_END:
                raise ValueError(f"live {column} range exhausted; regenerate the world with `make data`")
            state[column] = first + n
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            tmp.replace(self.path)
        return first


def request_id_strings(first: int, n: int) -> np.ndarray:
    prefix, width = ID_FORMATS["request_id"]
    return np.array([f"{prefix}{first + i:0{width}d}" for i in range(n)], dtype=object)


@dataclass
class Ledger:
    """Events drawn but not yet landed, per table, as contract columns plus bookkeeping."""

    tables: dict[str, Cols] = field(default_factory=dict)

    def add(self, name: str, cols: Cols) -> None:
        old = self.tables.get(name)
        self.tables[name] = cols if old is None else {k: np.concatenate([old[k], cols[k]]) for k in cols}

    def take_due(self, name: str, now_us: int) -> Cols:
        cols = self.tables.get(name)
        if cols is None:
            return {}
        due = cols["event_ts"] <= now_us
        self.tables[name] = {k: v[~due] for k, v in cols.items()}
        return {k: v[due] for k, v in cols.items()}

    def rows(self, name: str) -> int:
        cols = self.tables.get(name)
        return 0 if cols is None else len(cols["event_ts"])


SERVED_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("impression_id", pa.string()),
        ("experiment_id", pa.string()),
        ("arm", pa.string()),
        ("credit_arm", pa.string()),
        ("user_id", pa.string()),
        ("product_id", pa.string()),
        ("surface", pa.string()),
        ("position", pa.int32()),
        ("served_at", pa.timestamp("us", tz="UTC")),
        ("p_click", pa.float64()),
        ("p_order_given_click", pa.float64()),
        ("expected_order_value", pa.float64()),
        ("expected_gmv", pa.float64()),
    ]
)
LISTS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("experiment_id", pa.string()),
        ("arm", pa.string()),
        ("user_id", pa.string()),
        ("served_at", pa.timestamp("us", tz="UTC")),
        ("n_served", pa.int32()),
        ("expected_gmv", pa.float64()),
        ("best_expected_gmv", pa.float64()),
    ]
)


@dataclass(frozen=True)
class AnswerMeta:
    """Per answer of a `Served`: the request id (the service's under an experiment), experiment and arms."""

    request_id: np.ndarray  # str per answer (None: take a live request id)
    experiment_id: list[str | None]
    arm: list[str | None]
    credit: np.ndarray  # per served slot: the arm credited (str or None)


def _ids(column: str, values: np.ndarray) -> list[str]:
    prefix, width = ID_FORMATS[column]
    return [f"{prefix}{int(v):0{width}d}" for v in values]


class LiveLanding:
    """Turns outcomes into landed rows and oracle rows for one run."""

    def __init__(
        self,
        raw_dir: Path,
        oracle_dir: Path,
        world: StoredWorld,
        run_id: str,
        seed: int,
        publisher: EventStream | None = None,
    ) -> None:
        self.raw_dir, self.world, self.run_id = raw_dir, world, run_id
        self.publisher = publisher
        self.published = 0
        self.config = world.config
        self.ids = IdCounter(oracle_dir, world)
        self.ledger = Ledger()
        self.pending_dir = live_dir(oracle_dir) / "pending"
        self._load_pending()
        self.run_dir = live_dir(oracle_dir) / run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.served = pq.ParquetWriter(self.run_dir / "served.parquet", SERVED_SCHEMA, compression="zstd")
        self.lists = pq.ParquetWriter(self.run_dir / "lists.parquet", LISTS_SCHEMA, compression="zstd")
        self.flaw_seed = seed
        self.flushes = 0
        # batches drawn through the flaw code (a flush, or a publish tick): the key of each one's flaw draws
        self.batches = 0
        self.unlanded: dict[str, list[pa.Table]] = {name: [] for name in EVENT_TABLES}  # published, not yet landed
        self.landed = dict.fromkeys(EVENT_TABLES, 0)
        self.drawn = dict.fromkeys(EVENT_TABLES, 0)
        self.flaw_counts: dict[str, dict[str, int]] = {name: {} for name in EVENT_TABLES}

    def add(self, outcome: Outcome, served: Served, meta: AnswerMeta, users: np.ndarray) -> None:
        """Record one batch of answered sessions: ledger rows for the raw zone, truth rows for the oracle."""
        n_imp, n_clk, n_ord = len(outcome.imp_ts), len(outcome.clicked), len(outcome.ordered)
        missing = np.array([r is None for r in meta.request_id], dtype=bool)
        request_id = meta.request_id.copy()
        if missing.any():
            request_id[missing] = request_id_strings(
                self.ids.take("request_id", int(missing.sum())), int(missing.sum())
            )
        imp_id = self.ids.take("impression_id", n_imp) + np.arange(n_imp, dtype=np.int64)
        clk_id = self.ids.take("click_id", n_clk) + np.arange(n_clk, dtype=np.int64)
        ord_id = self.ids.take("order_id", n_ord) + np.arange(n_ord, dtype=np.int64)
        clicked, ordered = outcome.clicked, outcome.ordered
        ord_imp = clicked[ordered]
        has_click = np.zeros(n_imp, dtype=bool)
        has_click[clicked] = True
        has_order = np.zeros(n_clk, dtype=bool)
        has_order[ordered] = True
        user = outcome.imp_user.astype(np.int64) + 1
        product = outcome.imp_product.astype(np.int64) + 1
        self.ledger.add(
            "impressions",
            {
                "impression_id": imp_id,
                "request_id": request_id[outcome.imp_answer],
                "event_ts": outcome.imp_ts,
                "user_id": user,
                "product_id": product,
                "surface": outcome.imp_surface.astype(np.int8),
                "position": outcome.imp_position,
                "_dependent": has_click,
            },
        )
        self.ledger.add(
            "clicks",
            {
                "click_id": clk_id,
                "impression_id": imp_id[clicked],
                "event_ts": outcome.clk_ts,
                "user_id": user[clicked],
                "product_id": product[clicked],
                "_dependent": has_order,
            },
        )
        quantity = outcome.quantity
        self.ledger.add(
            "orders",
            {
                "order_id": ord_id,
                "impression_id": imp_id[ord_imp],
                "click_id": clk_id[ordered],
                "event_ts": outcome.ord_ts,
                "user_id": user[ord_imp],
                "product_id": product[ord_imp],
                "quantity": quantity,
                # the historical tables' exact product, so the gmv check in staging holds to the bit
                "gmv": quantity.astype(np.float64) * outcome.unit_price,
                "unit_price": outcome.unit_price,
                "_dependent": np.zeros(n_ord, dtype=bool),
            },
        )
        for name, n in zip(EVENT_TABLES, (n_imp, n_clk, n_ord), strict=True):
            self.drawn[name] += n

        surfaces = LABELS["surface"]
        experiment = np.array(meta.experiment_id, dtype=object)
        arm = np.array(meta.arm, dtype=object)
        served_at = pa.array(served.answered_us[outcome.imp_answer], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        self.served.write_table(
            pa.Table.from_arrays(
                [
                    pa.array(request_id[outcome.imp_answer], pa.string()),
                    pa.array(_ids("impression_id", imp_id), pa.string()),
                    pa.array(experiment[outcome.imp_answer], pa.string()),
                    pa.array(arm[outcome.imp_answer], pa.string()),
                    pa.array(meta.credit, pa.string()),
                    pa.array(_ids("user_id", user), pa.string()),
                    pa.array(_ids("product_id", product), pa.string()),
                    pa.array([surfaces[s] for s in outcome.imp_surface], pa.string()),
                    pa.array(outcome.imp_position, pa.int32()),
                    served_at,
                    pa.array(outcome.p_click, pa.float64()),
                    pa.array(outcome.p_order, pa.float64()),
                    pa.array(outcome.expected_value, pa.float64()),
                    pa.array(outcome.p_click * outcome.p_order * outcome.expected_value, pa.float64()),
                ],
                schema=SERVED_SCHEMA,
            )
        )
        self.lists.write_table(
            pa.Table.from_arrays(
                [
                    pa.array(request_id, pa.string()),
                    pa.array(experiment, pa.string()),
                    pa.array(arm, pa.string()),
                    pa.array(_ids("user_id", users.astype(np.int64) + 1), pa.string()),
                    pa.array(served.answered_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    pa.array(np.diff(served.offsets), pa.int32()),
                    pa.array(outcome.list_gmv, pa.float64()),
                    pa.array(outcome.best_gmv, pa.float64()),
                ],
                schema=LISTS_SCHEMA,
            )
        )

    def ledger_rows(self) -> int:
        return sum(self.ledger.rows(name) for name in EVENT_TABLES)

    def publish(self, now_us: int) -> int:
        """Publish every event that has happened by `now_us` (stamped `_ingested_at = now_us`) to the stream; it
        lands at the next flush. Without a stream, nothing: events wait for the flush. Returns events published."""
        if self.publisher is None:
            return 0
        published = 0
        for name in EVENT_TABLES:
            arrow = self._draw(name, now_us)
            if arrow is not None:
                self.unlanded[name].append(arrow)
                published += self.publisher.publish(raw_events(name, arrow))
        self.published += published
        return published

    def flush(self, now_us: int) -> dict[str, int]:
        """Land every event that has happened by `now_us`, stamped `_ingested_at = now_us` (or the publish tick
        that published it); rows per table."""
        self.publish(now_us)  # what became due since the last tick: on the stream before it lands, as the others
        written: dict[str, int] = {}
        self.flushes += 1
        for name in EVENT_TABLES:
            parts = self.unlanded[name]
            if self.publisher is None and (arrow := self._draw(name, now_us)) is not None:
                parts.append(arrow)
            written[name] = self._land(name, parts) if parts else 0
            self.unlanded[name] = []
        self._mark(now_us)
        return written

    def _mark(self, now_us: int) -> None:
        """Record that this run's events up to `now_us` have all landed, also when none was due.

        The newest `_ingested_at` of the landed files says the same only while events keep arriving; once a run's
        last order has landed, a reader (the experiment report) would otherwise wait for a flush that never comes.
        """
        folder = self.raw_dir / LIVE_WATERMARK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.run_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_id": self.run_id, "landed_through_us": int(now_us)}))
        tmp.replace(path)

    def _draw(self, name: str, now_us: int) -> pa.Table | None:
        """The events of table `name` due by `now_us`, through the flaw code, as they land; None if none is due."""
        due = self.ledger.take_due(name, now_us)
        if not due or len(due["event_ts"]) == 0:
            return None
        self.batches += 1
        n = len(due["event_ts"])
        dependent = due.pop("_dependent")
        request_id = due.pop("request_id", None)
        due["_ingested_at"] = np.full(n, now_us, dtype=np.int64)
        if request_id is not None:
            due["request_id"] = np.arange(n, dtype=np.int64)  # row number: swapped for the strings below
        table = EventTable(name, due)

        def gather(rows: np.ndarray) -> EventTable:
            return EventTable(name, {k: v[rows].copy() for k, v in due.items()})

        rng = rng_for(self.flaw_seed, f"live/{self.run_id}/{self.batches}/{name}")
        # the usual rate on average: a binomial count per family (history's one-per-kind minimum would swamp
        # a flush's few orders); never late, which needs a day-old event
        per_family = int(rng.binomial(n, self.config.flaw_rate))
        plan = plan_flaws(
            name, n, self.config, now_us, dependent, np.zeros(n, dtype=bool), gather, rng, per_family=per_family
        )
        for kind, count in plan.counts.items():
            self.flaw_counts[name][kind] = self.flaw_counts[name].get(kind, 0) + count
        flawed = apply_flaws(plan, table, 0)
        cols, nulls = flawed.columns, flawed.nulls
        order = np.lexsort((cols[SORT_KEYS[name]], cols["_ingested_at"]))
        cols = {k: v[order] for k, v in cols.items()}
        nulls = {k: v[order] for k, v in nulls.items()}
        strings = None
        if request_id is not None:
            strings = request_id[cols["request_id"]]
            cols["request_id"] = np.zeros(len(order), dtype=np.int64)
        arrow = to_arrow(name, cols, nulls)
        if strings is not None:
            index = SCHEMAS[name].get_field_index("request_id")
            arrow = arrow.set_column(index, SCHEMAS[name].field(index), pa.array(strings, pa.string()))
        return arrow

    def _land(self, name: str, parts: list[pa.Table]) -> int:
        """The flush's rows of `name`, in the order they were drawn (by `_ingested_at`, then key): one file per UTC
        day of their `_ingested_at`, in that day's partition (a flush just after midnight also lands the rows the
        last ticks before it published, stamped the day before)."""
        arrow = pa.concat_tables(parts)
        ingested = arrow.column("_ingested_at").cast(pa.int64()).to_numpy()
        days = ingested // (86_400 * SECOND_US)
        for day_number in np.unique(days):
            rows = arrow.filter(pa.array(days == day_number))
            day = datetime.fromtimestamp(int(day_number) * 86_400, UTC).date()
            folder = self.raw_dir / name / f"dt={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            # a new file per flush: raw partitions are append-only, and the name says which run wrote it
            pq.write_table(rows, folder / f"part-live-{self.run_id}-{self.flushes:05d}.parquet", compression="zstd")
        self.landed[name] += arrow.num_rows
        return int(arrow.num_rows)

    def close(self, now_us: int) -> dict[str, int]:
        """Final flush; what has not happened yet goes to `pending/` for a later run. Returns pending rows."""
        self.flush(now_us)
        self.served.close()
        self.lists.close()
        append_truth(self.run_dir.parent.parent, self.run_dir / "served.parquet")
        pending = {name: self.ledger.rows(name) for name in EVENT_TABLES}
        self._save_pending()
        summary = {
            "run_id": self.run_id,
            "drawn": self.drawn,
            "landed": self.landed,
            "pending": pending,
            "flushes": self.flushes,
            "flaw_counts": self.flaw_counts,
            "flaw_rate": self.config.flaw_rate,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return pending

    def _save_pending(self) -> None:
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        for name in EVENT_TABLES:
            cols = self.ledger.tables.get(name)
            path = self.pending_dir / f"{name}.parquet"
            if cols is None or len(cols["event_ts"]) == 0:
                path.unlink(missing_ok=True)
                continue
            pq.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}), path)

    def _load_pending(self) -> None:
        for name in EVENT_TABLES:
            path = self.pending_dir / f"{name}.parquet"
            if path.exists():
                table = pq.read_table(path)
                cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
                if "request_id" in cols:
                    cols["request_id"] = cols["request_id"].astype(object)
                # kept until close rewrites it: a crash lands a row twice (a quarantined duplicate), never zero times
                self.ledger.add(name, cols)


def append_truth(oracle_dir: Path, served_path: Path) -> int:
    """Add a run's served impressions to `oracle/impression_truth.parquet`, the one file evaluation reads.

    Streamed row group by row group into a new file swapped in at the end, so memory stays that of a row
    group and a crash leaves the old file whole. Returns the rows added.
    """
    path = oracle_dir / "impression_truth.parquet"
    added = pq.read_table(served_path, columns=[f.name for f in ORACLE_SCHEMA]).cast(ORACLE_SCHEMA)
    if added.num_rows == 0:
        return 0
    tmp = path.with_suffix(".parquet.partial")
    with pq.ParquetWriter(tmp, ORACLE_SCHEMA, compression="zstd") as writer:
        if path.exists():
            old = pq.ParquetFile(path)
            for i in range(old.num_row_groups):
                writer.write_table(old.read_row_group(i).cast(ORACLE_SCHEMA))
        writer.write_table(added)
    tmp.replace(path)
    return int(added.num_rows)
