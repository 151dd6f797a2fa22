"""Reading a view: its latest row per entity in one DuckDB query, ranked by one 128-bit integer."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeGuard

import pyarrow as pa
from feast import FileSource
from feast.data_format import ParquetFormat
from feast.infra.common.materialization_job import MaterializationTask
from feast.repo_config import RepoConfig
from feast.value_type import ValueType

from platform_common.feast_fast_engine.layout import FallBackToFeast, ViewLayout, utc

# DuckDB types of the timestamp columns read here: whole microseconds (latest_sql's integer rank); finer ones
# (TIMESTAMP_NS) would tie where Feast tells them apart, so such views go to Feast's engine.
_MICROSECOND_TYPES = {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}


def latest_rows(
    duckdb_connection: Any,
    offline_store: Any,
    repo_config: RepoConfig,
    layout: ViewLayout,
    start: datetime,
    end: datetime,
    order_by: str | None = None,
) -> pa.Table:
    """The latest row per entity with start <= event time <= end (Feast's bounds), named as Feast names them,
    sorted by `order_by` if given (key_order_sql: as Feast's serialised entity keys sort)."""
    con = duckdb_connection.cursor()
    try:
        con.execute("set TimeZone = 'UTC'")
        source = layout.source
        if is_local_parquet(source):
            relation = "read_parquet($path)"
            params: dict[str, Any] = {"path": source.path}
        else:
            pulled = offline_store.pull_all_from_table_or_query(
                config=repo_config,
                data_source=source,
                join_key_columns=[layout.source_column(k) for k in layout.join_keys],
                feature_name_columns=[layout.source_column(f) for f in layout.features],
                timestamp_field=layout.timestamp_field,
                created_timestamp_column=layout.created_field,
                start_date=start,
                end_date=end,
            ).to_arrow()
            con.register("pulled", pulled)
            relation, params = "pulled", {}
        stamps = [quote(c) for c in (layout.timestamp_field, layout.created_field) if c]
        types = con.sql(f"select {', '.join(stamps)} from {relation} limit 0", params=params).types
        params |= {"start": utc(start), "end": utc(end)}
        if any(str(t) not in _MICROSECOND_TYPES for t in types):
            raise FallBackToFeast(f"timestamp columns of types {', '.join(map(str, types))}")
        sql = latest_sql(layout, relation)
        if order_by is not None:
            sql += f" order by {order_by}"
        table = con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()
    for key in layout.join_keys:
        if table.column(key).null_count:
            raise FallBackToFeast(f"null values in join key {key}")
    return table.combine_chunks()


def latest_sql(layout: ViewLayout, relation: str) -> str:
    """Latest row per entity: arg_max over (event time, created time), a hash aggregate instead of a sort.

    Same choice as Feast's dedup (sort by event then created timestamp, descending, nulls last): a null
    created timestamp ranks below any real one. For microsecond timestamps (the only ones read here) the pair
    ranks as one 128-bit integer, event microseconds in the high 64 bits and created ones offset into the low
    64, which DuckDB compares far faster than a struct of the two (0.23 s vs 0.37 s for 4.7 million rows)."""
    ts = quote(layout.timestamp_field)
    keys = [quote(layout.source_column(k)) for k in layout.join_keys]
    payload = [f"{quote(f)} := {quote(layout.source_column(f))}" for f in layout.features]
    payload.append(f"{ts} := {ts}")
    # The event times are finite (between $start and $end) and |epoch_us| < 2^63, so the sum fits a hugeint.
    rank = f"epoch_us({ts})::hugeint * {1 << 64}"
    if layout.created_field:
        created = quote(layout.created_field)
        payload.append(f"{created} := {created}")
        # -1 for null and -infinity (whose epoch_us is null), 2^64 - 1 for +infinity, else in [0, 2^64 - 2].
        rank += (
            f" + case when {created} = 'infinity' then {(1 << 64) - 1} "
            f"else coalesce(epoch_us({created})::hugeint + {1 << 63}, -1) end"
        )
    key_names = [f"{k} as {quote(name)}" for k, name in zip(keys, layout.join_keys, strict=True)]
    return (
        f"select {', '.join(quote(k) for k in layout.join_keys)}, unnest(latest) from ("
        f"select {', '.join(key_names)}, arg_max(struct_pack({', '.join(payload)}), {rank}) as latest "
        f"from {relation} where {ts} >= $start and {ts} <= $end group by all)"
    )


def key_order_sql(layout: ViewLayout) -> str | None:
    """An ORDER BY that sorts rows as their serialised entity keys sort, when every join key is a string:
    the keys go in name order, each as its byte length (little-endian, so in numeric order below 256) then
    its UTF-8 bytes, which DuckDB compares as bytes. Sorting in DuckDB (C++, without the GIL) instead of
    serialising every key in Python first lets a view's first chunk be written sooner; past 255 bytes the
    order is merely less perfect, which costs SQLite some speed and changes nothing stored."""
    names = sorted(layout.join_keys)
    if any(layout.join_key_types[name] != ValueType.STRING for name in names):
        return None
    return ", ".join(f"strlen({quote(name)}), {quote(name)}" for name in names)


def largest_source(tasks: Sequence[MaterializationTask]) -> int | None:
    """Index of the task whose source has the most rows, from the parquet footers (local parquet only); None when
    it is the first task anyway (the reading thread starts with it) or no source's size is known."""

    sizes: list[int] = []
    for task in tasks:
        source = getattr(task.feature_view, "batch_source", None)
        try:
            sizes.append(_local_rows(source.path) if is_local_parquet(source) else 0)
        except (OSError, pa.ArrowException):
            sizes.append(0)
    if not sizes or max(sizes) == 0:
        return None
    largest = sizes.index(max(sizes))
    return largest or None


def is_local_parquet(source: Any) -> TypeGuard[FileSource]:
    """A FileSource the DuckDB offline store would read as one local parquet file, or a glob of them (the
    stream log's parts) with at least one match."""
    if type(source) is not FileSource or not source.path or not os.path.isabs(source.path):
        return False
    parquet = isinstance(source.file_format, ParquetFormat) or (
        source.file_format is None and source.path.endswith(".parquet")
    )
    return parquet and (
        os.path.isfile(source.path)
        or (glob.has_magic(source.path) and any(map(os.path.isfile, glob.iglob(source.path))))
    )


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _local_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in sorted(glob.glob(path)) if os.path.isfile(p))
