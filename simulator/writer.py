"""The raw-data contract as arrow schemas, and the parquet writers (hive partitions by landing date).

Columns arrive as numpy arrays (ids as integers, labels as small codes) and are typed here once, so
every table matches docs/data_contracts.md exactly: `timestamp[us, tz=UTC]`, date32, int32, float64.
Big tables stream in (`PartitionedTable`, `TruthWriter`) and come out as the same bytes as one call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.campaigns import DAY_US, EPOCH
from simulator.config import CATALOG, COUNTRIES, DEVICES, SURFACES, TIERS
from simulator.entities import subcategory_names
from simulator.flaws import UNKNOWN_SURFACES

TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema(
        [
            ("user_id", pa.string()),
            ("country", pa.string()),
            ("device", pa.string()),
            ("signup_ts", TS),
            ("_ingested_at", TS),
        ]
    ),
    "merchants": pa.schema(
        [
            ("merchant_id", pa.string()),
            ("country", pa.string()),
            ("tier", pa.string()),
            ("main_category_l1", pa.string()),
            ("joined_ts", TS),
            ("_ingested_at", TS),
        ]
    ),
    "products": pa.schema(
        [
            ("product_id", pa.string()),
            ("merchant_id", pa.string()),
            ("category_l1", pa.string()),
            ("category_l2", pa.string()),
            ("base_price", pa.float64()),
            ("created_ts", TS),
            ("_ingested_at", TS),
        ]
    ),
    "product_prices": pa.schema(
        [
            ("product_id", pa.string()),
            ("price_date", pa.date32()),
            ("price", pa.float64()),
            ("discount_pct", pa.float64()),
            ("_ingested_at", TS),
        ]
    ),
    "merchant_daily": pa.schema(
        [
            ("merchant_id", pa.string()),
            ("snapshot_date", pa.date32()),
            ("rating", pa.float64()),
            ("is_live", pa.bool_()),
            ("_ingested_at", TS),
        ]
    ),
    "campaign_calendar": pa.schema(
        [
            ("calendar_date", pa.date32()),
            ("campaign_name", pa.string()),
            ("is_mega_sale", pa.bool_()),
            ("_ingested_at", TS),
        ]
    ),
    "impressions": pa.schema(
        [
            ("impression_id", pa.string()),
            ("request_id", pa.string()),
            ("event_ts", TS),
            ("user_id", pa.string()),
            ("product_id", pa.string()),
            ("surface", pa.string()),
            ("position", pa.int32()),
            ("_ingested_at", TS),
        ]
    ),
    "clicks": pa.schema(
        [
            ("click_id", pa.string()),
            ("impression_id", pa.string()),
            ("event_ts", TS),
            ("user_id", pa.string()),
            ("product_id", pa.string()),
            ("_ingested_at", TS),
        ]
    ),
    "orders": pa.schema(
        [
            ("order_id", pa.string()),
            ("impression_id", pa.string()),
            ("click_id", pa.string()),
            ("event_ts", TS),
            ("user_id", pa.string()),
            ("product_id", pa.string()),
            ("quantity", pa.int32()),
            ("unit_price", pa.float64()),
            ("gmv", pa.float64()),
            ("_ingested_at", TS),
        ]
    ),
}

ORACLE_SCHEMA = pa.schema(
    [
        ("impression_id", pa.string()),
        ("p_click", pa.float64()),
        ("p_order_given_click", pa.float64()),
        ("expected_order_value", pa.float64()),
    ]
)

# Per impression, the session it was shown in (`simulator.sessions`): what the oracle and analyses need to
# study the session model; raw impressions keep their contract (request_id only).
SESSION_SCHEMA = pa.schema(
    [
        ("impression_id", pa.string()),
        ("session_id", pa.int64()),
        ("page_in_session", pa.int32()),
        ("intent_category", pa.string()),  # null: a session without intent
        ("intent_match", pa.bool_()),
        ("session_interest", pa.int32()),  # the session's earlier clicks in the product's category (uncapped)
    ]
)

# Zero-padded ids: prefix and digit count.
ID_FORMATS: dict[str, tuple[str, int]] = {
    "user_id": ("u", 7),
    "product_id": ("p", 6),
    "merchant_id": ("m", 5),
    "impression_id": ("imp", 9),
    "request_id": ("req", 9),
    "click_id": ("clk", 9),
    "order_id": ("ord", 9),
}

LABELS: dict[str, tuple[str, ...]] = {
    "country": COUNTRIES,
    "device": DEVICES,
    "tier": TIERS,
    "surface": SURFACES + UNKNOWN_SURFACES,
    "category_l1": tuple(c.name for c in CATALOG),
    "main_category_l1": tuple(c.name for c in CATALOG),
    "category_l2": tuple(subcategory_names()),
}

# Physical numpy layout of each primitive arrow type the contract uses.
NUMPY_TYPES: dict[pa.DataType, type] = {
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float64(): np.float64,
    pa.date32(): np.int32,
    TS: np.int64,
}

SORT_KEYS: dict[str, str] = {
    "users": "user_id",
    "merchants": "merchant_id",
    "products": "product_id",
    "product_prices": "product_id",
    "merchant_daily": "merchant_id",
    "campaign_calendar": "calendar_date",
    "impressions": "impression_id",
    "clicks": "click_id",
    "orders": "order_id",
}


def _validity(null: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    if null is None or not null.any():
        return None, 0
    return pa.py_buffer(np.packbits(~null, bitorder="little")), int(null.sum())


def _strings(offsets: np.ndarray, data: np.ndarray, null: np.ndarray | None) -> pa.Array:
    validity, null_count = _validity(null)
    n = len(offsets) - 1
    return pa.StringArray.from_buffers(
        n,
        pa.py_buffer(np.ascontiguousarray(offsets, dtype=np.int32)),
        pa.py_buffer(np.ascontiguousarray(data)),
        validity,
        null_count,
    )


def format_ids(prefix: str, values: np.ndarray, width: int, null: np.ndarray | None = None) -> pa.Array:
    """`prefix` + zero-padded digits, built as one byte buffer (millions of f-strings are slow)."""
    n = len(values)
    v = values.astype(np.int64).copy()
    if n and (v.min() < 0 or v.max() >= 10**width):
        raise ValueError(f"ids for prefix {prefix!r} do not fit in {width} digits")
    size = len(prefix) + width
    buf = np.empty((n, size), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    for i in range(size - 1, len(prefix) - 1, -1):
        buf[:, i] = 48 + v % 10
        v //= 10
    return _strings(np.arange(n + 1) * size, buf, null)


def label_strings(labels: tuple[str, ...], codes: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Small integer codes to their label strings, gathered byte by byte without a Python loop."""
    encoded = [label.encode() for label in labels]
    pool = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    label_len = np.array([len(e) for e in encoded], dtype=np.int64)
    label_start = np.concatenate([[0], np.cumsum(label_len)[:-1]])
    lengths = label_len[codes]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    # byte j of row i comes from pool[label_start[code_i] + j]
    gather = np.repeat(label_start[codes] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return _strings(offsets, pool[gather], null)


def _primitive(values: np.ndarray, dtype: pa.DataType, null: np.ndarray | None) -> pa.Array:
    """Numeric, timestamp, date and bool arrays straight from numpy buffers.

    `pa.array(ndarray)` would import pandas to sniff its argument (seconds on a cold start).
    """
    validity, null_count = _validity(null)
    if pa.types.is_boolean(dtype):
        data = np.packbits(values.astype(bool), bitorder="little")
    else:
        data = np.ascontiguousarray(values, dtype=NUMPY_TYPES[dtype])
    return pa.Array.from_buffers(dtype, len(values), [validity, pa.py_buffer(np.ascontiguousarray(data))], null_count)


def to_arrow(
    name: str,
    columns: dict[str, np.ndarray],
    nulls: dict[str, np.ndarray] | None = None,
    labels: dict[str, tuple[str, ...]] | None = None,
) -> pa.Table:
    nulls = nulls or {}
    labels = LABELS | (labels or {})
    arrays = []
    for column in SCHEMAS[name]:
        values = columns[column.name]
        null = nulls.get(column.name)
        if column.name in ID_FORMATS:
            prefix, width = ID_FORMATS[column.name]
            arrays.append(format_ids(prefix, values, width, null))
        elif pa.types.is_string(column.type):
            arrays.append(label_strings(labels[column.name], values.astype(np.int64), null))
        else:
            arrays.append(_primitive(values, column.type, null))
    return pa.Table.from_arrays(arrays, schema=SCHEMAS[name])


def write_partitioned(
    raw_dir: Path,
    name: str,
    columns: dict[str, np.ndarray],
    nulls: dict[str, np.ndarray] | None = None,
    labels: dict[str, tuple[str, ...]] | None = None,
    empty_day: int | None = None,
) -> int:
    """Write `raw/<name>/dt=YYYY-MM-DD/part-00000.parquet` by landing date; returns the row count.

    An empty table still gets one empty file (in `empty_day`'s partition) so readers globbing the
    folder find the schema instead of no files at all.
    """
    if len(columns["_ingested_at"]) == 0:
        if empty_day is None:
            raise ValueError(f"{name} is empty and has no partition to land in")
        _write_file(to_arrow(name, columns, nulls, labels), raw_dir / name / _partition(empty_day))
        return 0
    return _write_partitions(raw_dir, name, columns, nulls, labels)


def _write_partitions(
    raw_dir: Path,
    name: str,
    columns: dict[str, np.ndarray],
    nulls: dict[str, np.ndarray] | None,
    labels: dict[str, tuple[str, ...]] | None,
) -> int:
    ingested = columns["_ingested_at"]
    order = np.lexsort((columns[SORT_KEYS[name]], ingested))
    columns = {k: v[order] for k, v in columns.items()}
    nulls = {k: v[order] for k, v in (nulls or {}).items()}
    table = to_arrow(name, columns, nulls, labels)
    dt = columns["_ingested_at"] // DAY_US
    starts = np.flatnonzero(np.r_[True, dt[1:] != dt[:-1]])
    ends = np.r_[starts[1:], len(dt)]
    for start, end in zip(starts, ends, strict=True):
        _write_file(table.slice(start, end - start), raw_dir / name / _partition(int(dt[start])))
    return len(dt)


class PartitionedTable:
    """`write_partitioned` for rows arriving in batches, holding only partitions still open.

    A partition is written when the caller says no later batch can land in it (`flush`), sorted as
    the whole table would be, so the files are those one `write_partitioned` call would give.
    """

    def __init__(
        self, raw_dir: Path, name: str, nullable: tuple[str, ...] = (), labels: dict[str, tuple[str, ...]] | None = None
    ) -> None:
        self.raw_dir, self.name, self.nullable, self.labels = raw_dir, name, nullable, labels
        self.pending: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self.template: dict[str, np.ndarray] = {}
        self.rows = 0

    def add(self, columns: dict[str, np.ndarray], nulls: dict[str, np.ndarray] | None = None) -> None:
        n = len(columns["_ingested_at"])
        self.template = {k: v[:0] for k, v in columns.items()}
        self.pending.append((columns, nulls or {c: np.zeros(n, dtype=bool) for c in self.nullable}))

    def flush(self, through_day: int | None = None) -> None:
        """Write every pending partition up to epoch day `through_day` (all of them when None)."""
        if not self.pending:
            return
        columns = {k: np.concatenate([c[k] for c, _ in self.pending]) for k in self.pending[0][0]}
        nulls = {k: np.concatenate([m[k] for _, m in self.pending]) for k in self.pending[0][1]}
        done = np.ones(len(columns["_ingested_at"]), dtype=bool)
        if through_day is not None:
            done = columns["_ingested_at"] // DAY_US <= through_day
        rest = np.flatnonzero(~done)
        self.pending = [({k: v[rest] for k, v in columns.items()}, {k: v[rest] for k, v in nulls.items()})]
        if done.any():
            ready = np.flatnonzero(done)
            self.rows += _write_partitions(
                self.raw_dir,
                self.name,
                {k: v[ready] for k, v in columns.items()},
                {k: v[ready] for k, v in nulls.items()},
                self.labels,
            )

    def close(self, empty_day: int) -> int:
        """Write what is left; an empty table gets its one empty file. Returns rows written."""
        self.flush(None)
        if self.rows == 0:
            write_partitioned(self.raw_dir, self.name, self.template, labels=self.labels, empty_day=empty_day)
        return self.rows


@dataclass(frozen=True)
class TruthFile:
    """An oracle file written per impression: its name, schema and arrow conversion."""

    name: str
    schema: pa.Schema
    to_table: Callable[[dict[str, np.ndarray]], pa.Table]


class TruthWriter:
    """`oracle/impression_truth.parquet` (or another per-impression oracle file) appended in id order, in
    pyarrow's default row groups."""

    ROW_GROUP = 1024 * 1024

    def __init__(self, oracle_dir: Path, file: TruthFile | None = None) -> None:
        oracle_dir.mkdir(parents=True, exist_ok=True)
        self.file = file or IMPRESSION_TRUTH
        self.path = oracle_dir / self.file.name
        self.buffer: list[dict[str, np.ndarray]] = []
        self.buffered = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, truth: dict[str, np.ndarray]) -> None:
        self.buffer.append(truth)
        self.buffered += len(truth["impression_id"])
        while self.buffered >= self.ROW_GROUP:
            self._write(self.ROW_GROUP)

    def _write(self, n: int) -> None:
        truth = {k: np.concatenate([b[k] for b in self.buffer]) for k in self.buffer[0]}
        self.buffer = [{k: v[n:] for k, v in truth.items()}]
        self.buffered -= n
        table = self.file.to_table({k: v[:n] for k, v in truth.items()})
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.file.schema, compression="zstd")
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:  # under one row group: exactly the single-call file
            truth = {k: np.concatenate([b[k] for b in self.buffer]) for k in self.buffer[0]}
            pq.write_table(self.file.to_table(truth), self.path, compression="zstd")
            return
        if self.buffered:
            self._write(self.buffered)
        self.writer.close()


def _partition(epoch_day: int) -> str:
    return f"dt={(EPOCH + timedelta(days=epoch_day)).isoformat()}"


def _write_file(table: pa.Table, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet", compression="zstd")


def truth_table(truth: dict[str, np.ndarray]) -> pa.Table:
    return pa.Table.from_arrays(
        [
            format_ids("imp", truth["impression_id"], 9),
            _primitive(truth["p_click"], pa.float64(), None),
            _primitive(truth["p_order_given_click"], pa.float64(), None),
            _primitive(truth["expected_order_value"], pa.float64(), None),
        ],
        schema=ORACLE_SCHEMA,
    )


def session_truth_table(rows: dict[str, np.ndarray]) -> pa.Table:
    intent = rows["intent_category"].astype(np.int64)
    none = intent < 0
    codes = np.where(none, 0, intent)
    # label strings in blocks: gathering a million labels at once takes several int64 temporaries of the bytes
    block = 1 << 16
    labels = [
        label_strings(LABELS["category_l1"], codes[i : i + block], none[i : i + block])
        for i in range(0, max(len(codes), 1), block)
    ]
    return pa.Table.from_arrays(
        [
            format_ids("imp", rows["impression_id"], 9),
            _primitive(rows["session_id"].astype(np.int64), pa.int64(), None),
            _primitive(rows["page_in_session"].astype(np.int32), pa.int32(), None),
            pa.concat_arrays(labels),
            _primitive(rows["intent_match"], pa.bool_(), None),
            _primitive(rows["session_interest"].astype(np.int32), pa.int32(), None),
        ],
        schema=SESSION_SCHEMA,
    )


IMPRESSION_TRUTH = TruthFile("impression_truth.parquet", ORACLE_SCHEMA, truth_table)
SESSION_TRUTH = TruthFile("session_truth.parquet", SESSION_SCHEMA, session_truth_table)


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
