"""The streamed features over historical raw events, for the period before the stream existed.

DuckDB reads the raw landing zone (impressions, clicks, orders as landed: flaws, duplicates and late rows
included, exactly what the producer would have published), keeps the rows landed before `until`, and orders
them as the stream delivers them: by landing time, then impressions before clicks before orders (the
producer publishes a flush table by table), then id. The rows go through the processor's own parsing and
window engine (transforms/streaming/windows.py), so the definitions and the late/duplicate rule are the
stream's by construction; tests/transforms/test_stream_parity.py checks the two paths give identical rows.

Each landing (the events sharing one `_ingested_at`: one flush of the landing zone) is one batch: a row per
entity touched, its state after the landing, visible at that `_ingested_at` (the earliest a stream processor
could have pushed it). Backfill parts are named `backfill-*.parquet` and replaced by the next backfill.

Click categories come from the raw products table (transforms/streaming/catalogue.py), the processor's source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from platform_common.event_stream import KIND_RANK, RAW_EVENT_TABLES, raw_events
from platform_common.stream_log import PRODUCT_VIEW, USER_VIEW, VIEWS, view_dir, write_part
from transforms.streaming.catalogue import load_catalogue
from transforms.streaming.events import Malformed, check
from transforms.streaming.processor import Checkpoint, rows_frame
from transforms.streaming.windows import Engine


@dataclass(frozen=True)
class BackfillResult:
    events: int
    accepted: int
    rows: dict[str, int]
    engine: Engine


def raw_history(raw_dir: Path, until_us: int | None) -> Iterator[dict[str, Any]]:
    """Every landed event, in stream order, as the producer's payload dicts."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    tables = []
    for name in RAW_EVENT_TABLES:
        files = sorted((raw_dir / name).glob("dt=*/*.parquet"))
        if not files:
            continue
        where = "" if until_us is None else f" where epoch_us(_ingested_at) < {int(until_us)}"
        query = f"select * from read_parquet(?, union_by_name = true){where}"
        tables.append((name, con.sql(query, params=[[str(f) for f in files]]).to_arrow_table()))
    events = [e for name, table in tables for e in raw_events(name, table)]
    events.sort(
        key=lambda e: (
            e["ingested_at"] is None,
            e["ingested_at"] or 0,
            KIND_RANK[e["kind"]],
            e["event_id"] is None,
            e["event_id"] or "",
        )
    )
    yield from events


def backfill(
    raw_dir: Path,
    log_dir: Path,
    until: datetime | None = None,
    write: bool = True,
    catalogue: Mapping[str, str] | None = None,
) -> BackfillResult:
    """`catalogue`: product -> category_l1; default: the raw products table under `raw_dir`."""
    until_us = None if until is None else int(until.timestamp() * 1_000_000)
    engine = Engine(catalogue=load_catalogue(raw_dir) if catalogue is None else catalogue)
    # rows and their visible times per view, framed once at the end (a frame per landing costs ms each)
    out: dict[str, list[dict[str, Any]]] = {view: [] for view in VIEWS}
    visible: dict[str, list[int]] = {view: [] for view in VIEWS}
    users: set[str] = set()
    products: set[str] = set()
    landing: int | None = None
    events = accepted = 0

    def close_landing() -> None:
        if landing is None:
            return
        out[USER_VIEW].extend(engine.user_row(u) for u in sorted(users))
        visible[USER_VIEW].extend([landing] * len(users))
        out[PRODUCT_VIEW].extend(engine.product_row(p) for p in sorted(products))
        visible[PRODUCT_VIEW].extend([landing] * len(products))
        users.clear()
        products.clear()

    for payload in raw_history(raw_dir, until_us):
        events += 1
        if payload["ingested_at"] != landing:
            close_landing()
            landing = payload["ingested_at"]
        try:
            event = check(payload)
        except Malformed as exc:
            engine.counts[f"malformed_{exc.reason}"] += 1
            continue
        if engine.apply(event) != "accepted":
            continue
        accepted += 1
        if event.kind in ("impression", "click"):
            users.add(event.user_id)
            products.add(event.product_id)
    close_landing()
    rows = {}
    for view, view_rows in out.items():
        table = rows_frame(view, view_rows, visible[view]) if view_rows else None
        rows[view] = 0 if table is None else table.num_rows
        if write:
            for old in view_dir(log_dir, view).glob("backfill-*.parquet"):
                old.unlink()
            if table is not None:
                write_part(log_dir, view, table, "backfill-history")
    return BackfillResult(events, accepted, rows, engine)


def as_checkpoint(result: BackfillResult) -> Checkpoint:
    """The processor's starting state: the history's windows, so its first rows count what came before."""
    return Checkpoint(engine=result.engine)
