"""Training rows read from a parquet training set in bounded batches, and fed to XGBoost without a whole frame.

The training set (training/trainset.py) is one parquet file sorted by (event_timestamp, impression_id). DuckDB
scans it in file order, so every pass over the same rows yields them in the same order: XGBoost's row
subsampling and the quantile sketch depend on row order, and a model must not change because a scan did.
A `RowBatches` iterator is an `xgb.DataIter`: `QuantileDMatrix` pulls the batches (twice: one pass to sketch
the quantiles, one to bin the rows) and keeps only the binned matrix, one byte per value instead of the raw
frame's dozens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb

from platform_common.feature_spec import FeatureSpec

BATCH_ROWS = 131_072
# DuckDB's own memory while sorting or scanning: it spills to disk beyond this, so a large training set costs
# disk, not RAM.
DUCKDB_MEMORY_LIMIT = "1500MB"

DayWindow = tuple[date, date]  # first and last day, inclusive, in UTC


def connect(spill_dir: Path | None = None, threads: int = 2) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose days are UTC days (the split is in UTC) and which spills instead of growing."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"set memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    con.execute(f"set threads = {threads}")
    con.execute("set preserve_insertion_order = true")  # file order is the row order everything relies on
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"set temp_directory = '{spill_dir}'")
    return con


def _utc(day: date) -> str:
    return datetime.combine(day, time(0), tzinfo=UTC).isoformat()


def where_clause(windows: Sequence[DayWindow], clicked_only: bool = False) -> str:
    """Rows whose UTC day falls in one of `windows` (timestamp bounds, so the sorted file's row-group statistics
    skip whole row groups), optionally only clicked rows: the CVR head learns P(order | click)."""
    spans = [
        f"(event_timestamp >= '{_utc(start)}'::timestamptz and event_timestamp < '{_utc(end + timedelta(days=1))}'"
        "::timestamptz)"
        for start, end in windows
    ]
    where = "(" + " or ".join(spans) + ")"
    return where + (" and clicked = 1" if clicked_only else "")


SAMPLE_BUCKETS = 1_000_000


def negative_sample_sql(keep: float) -> str:
    """Whether a row is in the kept share: md5 of its impression id, so the same rows on every run, machine and
    DuckDB version (DuckDB's own hash() may change between versions)."""
    return f"(md5_number_lower(impression_id) % {SAMPLE_BUCKETS}) < {round(keep * SAMPLE_BUCKETS)}"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class RowSource:
    """Which rows of the training set: a parquet file, day windows, clicked rows only or all."""

    path: Path
    windows: tuple[DayWindow, ...]
    clicked_only: bool = False
    spill_dir: Path | None = None
    negative_keep: float = 1.0  # share of non-clicked rows kept (a hash of the impression id decides which)

    @property
    def sampled(self) -> bool:
        return self.negative_keep < 1.0 and not self.clicked_only

    def sql(self, columns: Sequence[str]) -> str:
        cols = ", ".join(quote(c) for c in columns)
        where = where_clause(self.windows, self.clicked_only)
        if self.sampled:
            where += f" and (clicked = 1 or {negative_sample_sql(self.negative_keep)})"
        return f"select {cols} from read_parquet('{self.path}') where {where}"

    def weights(self, clicked: np.ndarray) -> np.ndarray | None:
        """Each kept non-clicked row stands for 1 / negative_keep of them; None when nothing is sampled."""
        if not self.sampled:
            return None
        return np.where(clicked == 1, 1.0, 1.0 / self.negative_keep)

    def frames(self, columns: Sequence[str], batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
        """The rows in file order, `batch_rows` at a time, as pandas frames with Feast's to_df dtypes (via Arrow:
        integers with a missing value become float64, as they do in a frame Feast returns)."""
        with connect(self.spill_dir) as con:
            reader = con.sql(self.sql(columns)).to_arrow_reader(batch_rows)
            for batch in reader:
                if batch.num_rows:
                    yield batch.to_pandas()

    def column(self, name: str, dtype: type = np.float64) -> np.ndarray:
        """One column of these rows, in file order (labels are a byte or eight per row: fine to hold whole)."""
        with connect(self.spill_dir) as con:
            table = con.sql(self.sql([name])).to_arrow_table()
        return table.column(0).to_numpy().astype(dtype)

    def count(self) -> int:
        with connect(self.spill_dir) as con:
            row = con.execute(f"select count(*) from ({self.sql(['clicked'])})").fetchone()
        return int(row[0]) if row else 0


class RowBatches(xgb.DataIter):
    """`xgb.DataIter` over a `RowSource`: each batch is encoded with the FeatureSpec, the same code path as
    serving, so the matrix is the one the in-memory path would build, a slice at a time."""

    def __init__(self, source: RowSource, spec: FeatureSpec, batch_rows: int = BATCH_ROWS) -> None:
        self._source, self._spec, self._batch_rows = source, spec, batch_rows
        self._frames: Iterator[pd.DataFrame] | None = None
        self.rows_seen = 0  # rows handed to XGBoost in the current pass (the tests check coverage)
        super().__init__()

    def reset(self) -> None:
        self._frames = None
        self.rows_seen = 0

    def next(self, input_data: Callable) -> bool:
        if self._frames is None:
            extra = ["clicked"] if self._source.sampled and "clicked" not in self._spec.inputs else []
            self._frames = self._source.frames([*self._spec.inputs, *extra], self._batch_rows)
        frame = next(self._frames, None)
        if frame is None:
            return False
        self.rows_seen += len(frame)
        weight = self._source.weights(frame["clicked"].to_numpy()) if self._source.sampled else None
        input_data(data=self._spec.frame_matrix(frame), feature_names=list(self._spec.columns), weight=weight)
        return True


def quantile_matrix(
    source: RowSource, spec: FeatureSpec, nthread: int, ref: xgb.DMatrix | None = None, batch_rows: int = BATCH_ROWS
) -> xgb.QuantileDMatrix:
    """Binned rows for `hist` training; labels are set per head by the caller (one matrix serves every head
    that learns from the same rows). A validation matrix takes the training matrix as `ref`: the same bins."""
    return xgb.QuantileDMatrix(RowBatches(source, spec, batch_rows), ref=ref, nthread=nthread)
