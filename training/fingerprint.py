"""The training-data fingerprint: one definition for both training paths (batched from parquet, `--in-memory`).

Content hash of a training set: its column names and DuckDB types (sorted by name, so column order does not
count) and DuckDB's hash of every row's values, rows in (event_timestamp, impression_id) order, the order the
training set file is written in (a frame is sorted into it; a file is read as written). Read in batches, so a
file of any size hashes in bounded memory; a frame in memory goes through the same query, so the same rows
give the same fingerprint whichever path built them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pandas as pd

from training.batches import connect, quote

ROW_ORDER = ("event_timestamp", "impression_id")
BATCH_ROWS = 1 << 20


def _relation_fingerprint(con: duckdb.DuckDBPyConnection, relation: str, sort: bool) -> str:
    schema = con.sql(f"describe select * from {relation}").fetchall()
    columns = sorted((str(name), str(kind)) for name, kind, *_ in schema)
    digest = hashlib.sha256(";".join(f"{n}:{k}" for n, k in columns).encode())
    names = {n for n, _ in columns}
    order = f" order by {', '.join(quote(c) for c in ROW_ORDER)}" if sort and names.issuperset(ROW_ORDER) else ""
    values = ", ".join(quote(n) for n, _ in columns)
    for batch in con.sql(f"select hash({values}) from {relation}{order}").to_arrow_reader(BATCH_ROWS):
        digest.update(batch.column(0).to_numpy(zero_copy_only=False).astype("<u8").tobytes())
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path, spill_dir: Path | None = None) -> str:
    """Fingerprint of a parquet training set file, read in file order: trainset.py writes it sorted by
    ROW_ORDER, and re-sorting gigabytes to hash them would cost as much as the sort that wrote them."""
    with connect(spill_dir) as con:
        return _relation_fingerprint(con, f"read_parquet('{path}')", sort=False)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """Fingerprint of a training frame in memory: the same as its rows written to a training set file."""
    with connect() as con:
        con.register("training_frame", frame)
        return _relation_fingerprint(con, "training_frame", sort=True)
