"""Planted incidents (issue 19): what goes wrong in production, written into a generated landing zone.

`python -m simulator generate --incident KIND[:TARGET]@YYYY-MM-DD` (repeatable; `make data INCIDENT=...`)
rewrites the landed raw parquet after the simulation, from the given day on, so the simulation itself and its
oracle stay as they were (the platform sees the incident; the simulator's truth does not change):

- `zero_column:<column>@day`  a feature pipeline bug planted in the raw data: `product_prices.<column>` (default
  `discount_pct`) is written as 0 from that day, so the product_features mart carries zeros from that day's
  snapshot on.
- `late_batch@day`  that day's impressions, clicks and orders land LATE_HOURS after the day ends
  (`_ingested_at` moved; the files stay where they are, which is what a late loader re-run does).
- `price_shock:<category_l1>@day`  prices shown in that category are multiplied by PRICE_FACTOR from that day.
- `traffic_drop:<surface>@day`  that surface keeps 1 in 5 impressions from that day (the others, and their
  clicks and orders, never land).
A mis-calibrated challenger promoted by force is not a data incident: benchmarks/monitoring.py plants it on
the model registry (serving/monitoring tests cover the check on hand-made frames).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

Kind = Literal["zero_column", "late_batch", "price_shock", "traffic_drop"]
KINDS: tuple[str, ...] = ("zero_column", "late_batch", "price_shock", "traffic_drop")
DEFAULT_TARGET = {"zero_column": "discount_pct", "price_shock": "electronics", "traffic_drop": "search"}
LATE_HOURS = 30
PRICE_FACTOR = 1.6
TRAFFIC_KEPT = 0.2


class Incident(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Kind
    start: date
    target: str | None = None

    @classmethod
    def parse(cls, text: str) -> Incident:
        """`kind[:target]@YYYY-MM-DD`; a ValueError names what is wrong in one line."""
        head, sep, day = text.partition("@")
        kind, _, target = head.partition(":")
        if kind not in KINDS:
            raise ValueError(f"--incident {text!r}: kind must be one of {', '.join(KINDS)}")
        if not sep:
            raise ValueError(f"--incident {text!r}: expected KIND[:TARGET]@YYYY-MM-DD")
        try:
            start = date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"--incident {text!r}: {day!r} is not a YYYY-MM-DD day") from None
        if kind == "late_batch" and target:
            raise ValueError(f"--incident {text!r}: late_batch takes no target")
        return cls(kind=kind, start=start, target=target or DEFAULT_TARGET.get(kind))


def _files(raw_dir: Path, table: str) -> list[Path]:
    return sorted((raw_dir / table).glob("dt=*/*.parquet"))


def _day_of(path: Path) -> date:
    return date.fromisoformat(path.parent.name.removeprefix("dt="))


def _rewrite(path: Path, table: pa.Table) -> None:
    tmp = path.with_suffix(".incident.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def _start_ts(day: date) -> pa.Scalar:
    return pa.scalar(datetime(day.year, day.month, day.day), pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))


def zero_column(raw_dir: Path, incident: Incident) -> int:
    changed = 0
    for path in _files(raw_dir, "product_prices"):
        table = pq.read_table(path)
        if incident.target not in table.column_names:
            raise ValueError(f"zero_column: product_prices has no column {incident.target!r}")
        hit = pc.greater_equal(table["price_date"], pa.scalar(incident.start, pa.date32()))
        if not pc.any(hit).as_py():
            continue
        column = table[incident.target]
        zeros = pa.array(np.zeros(len(table)), column.type)
        table = table.set_column(
            table.column_names.index(incident.target), incident.target, pc.if_else(hit, zeros, column)
        )
        _rewrite(path, table)
        changed += int(pc.sum(hit).as_py())
    return changed


def late_batch(raw_dir: Path, incident: Incident) -> int:
    lo, hi = _start_ts(incident.start), _start_ts(incident.start + timedelta(days=1))
    late = pa.scalar(LATE_HOURS * 3600 * 1_000_000, pa.duration("us"))
    changed = 0
    for name in ("impressions", "clicks", "orders"):
        for path in _files(raw_dir, name):
            table = pq.read_table(path)
            ts = table["_ingested_at"]
            hit = pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))
            if not pc.any(hit).as_py():
                continue
            moved = pc.if_else(hit, pc.add(ts, late), ts)
            table = table.set_column(table.column_names.index("_ingested_at"), "_ingested_at", moved)
            _rewrite(path, table)
            changed += int(pc.sum(hit).as_py())
    return changed


def _products_in(raw_dir: Path, category: str) -> pa.Array:
    products = pa.concat_tables(
        [pq.read_table(p, columns=["product_id", "category_l1"]) for p in _files(raw_dir, "products")]
    )
    ids = pc.filter(products["product_id"], pc.equal(products["category_l1"], category))
    if len(ids) == 0:
        raise ValueError(f"price_shock: no product of category {category!r}")
    return ids.combine_chunks()


def price_shock(raw_dir: Path, incident: Incident) -> int:
    ids = _products_in(raw_dir, str(incident.target))
    changed = 0
    for path in _files(raw_dir, "product_prices"):
        table = pq.read_table(path)
        hit = pc.and_(
            pc.greater_equal(table["price_date"], pa.scalar(incident.start, pa.date32())),
            pc.is_in(table["product_id"], value_set=ids),
        )
        if not pc.any(hit).as_py():
            continue
        price = table["price"]
        table = table.set_column(
            table.column_names.index("price"), "price", pc.if_else(hit, pc.multiply(price, PRICE_FACTOR), price)
        )
        _rewrite(path, table)
        changed += int(pc.sum(hit).as_py())
    return changed


def traffic_drop(raw_dir: Path, incident: Incident, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    start = _start_ts(incident.start)
    dropped: list[pa.Array] = []
    for path in _files(raw_dir, "impressions"):
        table = pq.read_table(path)
        hit = pc.and_(
            pc.greater_equal(pc.fill_null(table["event_ts"], _start_ts(date(1970, 1, 1))), start),
            pc.equal(pc.fill_null(table["surface"], ""), str(incident.target)),
        )
        hit_np = np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
        drop = hit_np & (rng.uniform(size=len(table)) >= TRAFFIC_KEPT)
        if not drop.any():
            continue
        dropped.append(pc.filter(table["impression_id"], pa.array(drop)).combine_chunks())
        _rewrite(path, table.filter(pa.array(~drop)))
    if not dropped:
        return 0
    gone = pa.concat_arrays(dropped)
    for name in ("clicks", "orders"):  # what was never shown was never clicked or bought
        for path in _files(raw_dir, name):
            table = pq.read_table(path)
            keep = pc.invert(pc.fill_null(pc.is_in(table["impression_id"], value_set=gone), False))
            if not pc.all(keep).as_py():
                _rewrite(path, table.filter(keep))
    return len(gone)


PLANTERS: dict[str, Callable[[Path, Incident], int]] = {
    "zero_column": zero_column,
    "late_batch": late_batch,
    "price_shock": price_shock,
    "traffic_drop": traffic_drop,
}


def plant(raw_dir: Path, incidents: list[Incident]) -> dict[str, int]:
    """Apply each incident to the landing zone; {incident: rows changed}."""
    return {f"{i.kind}:{i.target}@{i.start}": PLANTERS[i.kind](raw_dir, i) for i in incidents}
