"""A faster write path behind `feast materialize`: a Feast batch-engine plugin.

Select it in feature_store.yaml (the prod profile does):

    batch_engine:
      type: platform_common.feast_fast_engine.FastComputeEngine

`feast materialize` / `materialize-incremental` stay the entry points: Feast still computes the intervals,
marks views as materializing and records the materialization in the registry; it hands every view of a run to
this engine at once (its batch path), and one job per view comes back. Profiling Feast's default local engine
shows where its time goes: one ValueProto per cell built through generic Python type dispatch, one
EntityKeyProto per row serialised through protobuf, then one SQLite statement per (entity, feature) or one
redis-py pipeline call per row. This engine keeps Feast's storage format byte for byte and only changes how the
bytes are produced and shipped:

- read: the latest row per entity in [start, end] in one DuckDB query (`arg_max` over event then created time,
  Feast's tie-break, ranked as one 128-bit integer for microsecond timestamps) straight from the FileSource's
  parquet, instead of pulling every row and deduplicating in pandas; sources that are not local parquet go
  through the configured offline store's `pull_all_from_table_or_query` and the same query runs on the Arrow
  table;
- encode: entity keys in Feast's v3 layout built from the join-key bytes; float columns serialised for the whole
  column at once with numpy, other scalars once per distinct value through protobuf; timestamps once per
  distinct value;
- write: SQLite through `executemany` of Feast's own upsert statement, in primary-key order; Redis as raw RESP
  `HSET`s pipelined in chunks over one connection of the store's client, after reading the stored timestamps of
  the chunk (one `EVAL` returning them all) so that, as in Feast, a row never overwrites a newer one;
- overlap: a reading thread encodes the next chunks while this thread writes, and the largest view's query
  starts at once on a third thread (see `materialize`).

A Redis without persistence that restarts comes back empty while the registry still says the views are
materialized; `materialize-incremental` would then only add the newest rows. The engine keeps a watermark per
view in Redis itself (lost with the data, or older after a restore) and reads from it, or from the TTL horizon,
when that is earlier than the window Feast asks for (see RedisWriter.resume_from).

Everything it does not know how to reproduce exactly (transformations, aggregations, offline writes, vector or
list features, Redis cluster/sentinel, other online stores) is handed to Feast's own local engine unchanged.
Before writing, it re-encodes the first rows of every view with Feast's own functions (`_convert_arrow_to_proto`,
`serialize_entity_key`) and falls back to Feast's engine, with a warning, if a single byte differs. The data is
read back through Feast's unchanged online stores (`get_online_features`); `make bench-materialize` checks the
reads are identical to the default path's.
"""

from __future__ import annotations

import logging
import operator
import os
import queue
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView, FileSource
from feast.data_format import ParquetFormat
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.infra.registry.base_registry import BaseRegistry
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.utils import _convert_arrow_to_proto, make_tzaware, to_naive_utc
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import StrictInt

try:
    import hiredis
except ImportError:  # optional: redis-py's parser is used instead
    hiredis = None

log = logging.getLogger("shoprank.feast_fast_engine")

ENGINE_TYPE = "platform_common.feast_fast_engine.FastComputeEngine"

# Feast value type -> (ValueProto field, python conversion) for the scalar types encoded here.
SCALAR_FIELDS: dict[ValueType, tuple[str, Callable[[Any], Any]]] = {
    ValueType.STRING: ("string_val", str),
    ValueType.INT64: ("int64_val", int),
    ValueType.INT32: ("int32_val", int),
    ValueType.DOUBLE: ("double_val", float),
    ValueType.FLOAT: ("float_val", float),
    ValueType.BOOL: ("bool_val", bool),
}
JOIN_KEY_TYPES = {ValueType.STRING, ValueType.INT64}


class FastComputeEngineConfig(FeastConfigBaseModel):
    """Options of the fast engine (all optional)."""

    type: Literal["platform_common.feast_fast_engine.FastComputeEngine"] = ENGINE_TYPE
    chunk_rows: StrictInt = 20_000
    """Entity rows encoded and sent per round trip."""
    verify_rows: StrictInt = 64
    """Leading rows of every view re-encoded with Feast's own functions before writing (0 disables)."""
    backend: str | None = None
    """Passed to Feast's local engine for the views it handles."""


class FallBackToFeast(Exception):
    """This view is outside what the fast path reproduces exactly: Feast's local engine takes it."""


class FastComputeEngine(LocalComputeEngine):
    QUEUE_CHUNKS = 4  # chunks read ahead of the writes: bounds the memory the reading thread may hold

    def __init__(
        self,
        *,
        repo_config: RepoConfig,
        offline_store: Any,
        online_store: Any,
        chunk_rows: int = 20_000,
        verify_rows: int = 64,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("type", None)
        super().__init__(
            backend=backend, repo_config=repo_config, offline_store=offline_store, online_store=online_store
        )
        self.chunk_rows = max(1, chunk_rows)
        self.verify_rows = max(0, verify_rows)

    # --- the job ---------------------------------------------------------------------------------------------

    @property
    def supports_batch(self) -> bool:
        """Feast then hands every view of a run to `materialize` in one call (FeatureStore._materialize_fvs_batch),
        so the reading of the next views overlaps the writing of this one."""
        return True

    def materialize(
        self, registry: BaseRegistry, tasks: MaterializationTask | list[MaterializationTask], **kwargs: Any
    ) -> list[MaterializationJob]:
        """One job per task, in task order. A reading thread reads, encodes and lays out the views in chunks and
        hands them over a bounded queue to this thread, which writes them: the next chunk's DuckDB, numpy and
        Python work overlaps the store's own work on this one (SQLite's inserts and redis-server's replies both
        run without the GIL), and a view's writes start after its first chunk rather than its last."""
        import duckdb

        tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
        channel: queue.Queue[Any] = queue.Queue(maxsize=self.QUEUE_CHUNKS)
        stop = threading.Event()
        # One in-process DuckDB for the run, a cursor per query: a new database per view cost ~20 ms each.
        self._duckdb = duckdb.connect()
        # The largest view's query is the longest wait before its first chunk; it starts at once on its own
        # thread, while the reading thread goes through the views before it and the writer writes them.
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="materialize-query")
        largest = _largest_source(tasks)
        prefetched = {largest: ahead.submit(self._query_view, tasks[largest])} if largest else {}
        reader = threading.Thread(
            target=self._read_views, args=(tasks, prefetched, channel, stop), name="materialize-read", daemon=True
        )
        # The writer needs the GIL back after every statement; by default a thread busy in Python keeps it up to
        # 5 ms, far longer than SQLite takes for one statement, which would starve the writes during the reads.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.0005))
        reader.start()
        try:
            return [self._write_view(registry, task, channel, **kwargs) for task in tasks]
        finally:
            stop.set()
            sys.setswitchinterval(switch)
            reader.join()
            ahead.shutdown(wait=True, cancel_futures=True)
            self._duckdb.close()

    # The reading thread puts, per view: the ReadView (or the exception that stopped it), then for a ReadView its
    # chunks and a _ViewEnd.

    def _read_views(
        self,
        tasks: list[MaterializationTask],
        prefetched: dict[int, Future[QueriedView]],
        channel: queue.Queue[Any],
        stop: threading.Event,
    ) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    channel.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        for i, task in enumerate(tasks):
            try:
                queried = prefetched[i].result() if i in prefetched else self._query_view(task)
                view, chunks = self._read_view(task, queried)
            except BaseException as exc:  # FallBackToFeast or a failure: the writer reports it for this view
                if not put(exc):
                    return
                continue
            if not put(view):
                return
            error: BaseException | None = None
            try:
                for chunk in chunks:
                    if not put(_Chunk(chunk)):
                        return
            except BaseException as exc:
                error = exc
            if not put(_ViewEnd(error)):
                return

    def _query_view(self, task: MaterializationTask) -> QueriedView:
        """The view's latest row per entity, in the order its writer wants them."""
        fv = task.feature_view
        started = time.perf_counter()
        version = self.repo_config.entity_key_serialization_version
        if version != 3:
            raise FallBackToFeast(f"entity_key_serialization_version {version}")
        writer = self._writer_for(fv, task)
        layout = ViewLayout.of(fv)
        start = writer.resume_from(self.repo_config, fv, task.start_time, task.end_time)
        order_by = layout.key_order_sql() if writer.in_key_order else None
        table = self._latest_rows(layout, start, task.end_time, order_by=order_by)
        return QueriedView(writer, layout, start, table, order_by is not None, started)

    def _read_view(self, task: MaterializationTask, queried: QueriedView) -> tuple[ReadView, Iterator[Any]]:
        fv, writer, layout, table = task.feature_view, queried.writer, queried.layout, queried.table
        if table.num_rows == 0:
            return ReadView(writer, queried.start, 0, time.perf_counter() - queried.started), iter(())
        if writer.in_key_order and not queried.sorted:  # every key first, to sort by
            keys = _entity_keys(table, layout)
            order = sorted(range(table.num_rows), key=keys.__getitem__)
            table, keys = table.take(order), _picker(order)(keys)

            def keys_of(part: pa.Table, lo: int) -> list[bytes]:
                return keys[lo : lo + part.num_rows]
        else:  # each chunk's keys as it is encoded, sorted already if the writer wants them so

            def keys_of(part: pa.Table, lo: int) -> list[bytes]:
                return _entity_keys(part, layout)

        if self.verify_rows:
            sample = table.slice(0, self.verify_rows)
            EncodedRows.build(sample, layout, keys_of(sample, 0)).verify_against_feast(fv, writer.timestamp_kind)
        plan = writer.plan(self.repo_config, fv, layout)
        chunks = (
            plan(EncodedRows.build(part, layout, keys_of(part, lo)))
            for lo in range(0, table.num_rows, self.chunk_rows)
            for part in [table.slice(lo, self.chunk_rows)]
        )
        return ReadView(writer, queried.start, table.num_rows, time.perf_counter() - queried.started), chunks

    def _write_view(
        self, registry: BaseRegistry, task: MaterializationTask, channel: queue.Queue[Any], **kwargs: Any
    ) -> MaterializationJob:
        fv = task.feature_view
        job_id = f"{fv.name}-{task.start_time}-{task.end_time}"
        waited = time.perf_counter()
        read = channel.get()
        started = time.perf_counter()
        if isinstance(read, FallBackToFeast):
            log.warning("%s: Feast's local engine takes this view (%s)", fv.name, read)
            return super()._materialize_one(registry, task, **kwargs)
        if isinstance(read, BaseException):  # reported the way Feast's engine reports it: the CLI raises it
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=read)
        chunks = _ViewChunks(channel)
        try:
            read.writer.write(self.repo_config, fv, iter(chunks), self.chunk_rows)
            chunks.drain()  # raises the reading thread's error, if the writer stopped short of it
            read.writer.written_up_to(self.repo_config, fv, task.end_time)
        except Exception as exc:
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=exc)
        finally:
            chunks.drain(quietly=True)
        log.info(
            "%s: %d entity rows from %s (read %.2fs, the writes waited %.2fs for it; write %.2fs, of which %.2fs "
            "waiting for chunks)",
            fv.name,
            read.rows,
            _utc(read.start).isoformat(timespec="seconds"),
            read.seconds,
            started - waited,
            time.perf_counter() - started,
            chunks.waited,
        )
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

    def _writer_for(self, fv: Any, task: MaterializationTask) -> OnlineWriter:
        if type(fv) is not FeatureView:
            raise FallBackToFeast(f"{type(fv).__name__} (transformations, aggregations or streams)")
        if not fv.online or getattr(fv, "offline", False):
            raise FallBackToFeast("view also writes to the offline store, or is not online")
        if task.disable_event_timestamp:
            raise FallBackToFeast("disable_event_timestamp")
        store, config = self.online_store, self.repo_config.online_store
        if type(store) is SqliteOnlineStore:
            if getattr(config, "vector_enabled", False) or getattr(config, "enable_openai_compatible_store", False):
                raise FallBackToFeast("sqlite vector / openai-compatible columns")
            return SqliteWriter(store)
        if type(store) is RedisOnlineStore:
            if config.redis_type != RedisType.redis:
                raise FallBackToFeast(f"redis_type {config.redis_type.value}")
            return RedisWriter(store)
        raise FallBackToFeast(f"online store {type(store).__name__}")

    def _latest_rows(self, layout: ViewLayout, start: datetime, end: datetime, order_by: str | None = None) -> pa.Table:
        """The latest row per entity with start <= event time <= end (Feast's bounds), named as Feast names them,
        sorted by `order_by` if given (ViewLayout.key_order_sql: as Feast's serialised entity keys sort)."""
        con = self._duckdb.cursor()
        try:
            con.execute("set TimeZone = 'UTC'")
            source = layout.source
            if _is_local_parquet(source):
                relation = "read_parquet($path)"
                params: dict[str, Any] = {"path": source.path}
            else:
                pulled = self.offline_store.pull_all_from_table_or_query(
                    config=self.repo_config,
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
            stamps = [_quote(c) for c in (layout.timestamp_field, layout.created_field) if c]
            types = con.sql(f"select {', '.join(stamps)} from {relation} limit 0", params=params).types
            params |= {"start": _utc(start), "end": _utc(end)}
            if any(str(t) not in _MICROSECOND_TYPES for t in types):
                raise FallBackToFeast(f"timestamp columns of types {', '.join(map(str, types))}")
            sql = layout.latest_sql(relation)
            if order_by is not None:
                sql += f" order by {order_by}"
            table = con.sql(sql, params=params).to_arrow_table()
        finally:
            con.close()
        for key in layout.join_keys:
            if table.column(key).null_count:
                raise FallBackToFeast(f"null values in join key {key}")
        return table.combine_chunks()


# DuckDB types of the timestamp columns read here: whole microseconds (ViewLayout.latest_sql's integer rank);
# finer ones (TIMESTAMP_NS) would tie where Feast tells them apart, so such views go to Feast's engine.
_MICROSECOND_TYPES = {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}


def _largest_source(tasks: Sequence[MaterializationTask]) -> int | None:
    """Index of the task whose source has the most rows, from the parquet footers (local parquet only); None when
    it is the first task anyway (the reading thread starts with it) or no source's size is known."""
    import pyarrow.parquet as pq

    sizes: list[int] = []
    for task in tasks:
        source = getattr(task.feature_view, "batch_source", None)
        try:
            sizes.append(pq.read_metadata(source.path).num_rows if _is_local_parquet(source) else 0)
        except (OSError, pa.ArrowException):
            sizes.append(0)
    if not sizes or max(sizes) == 0:
        return None
    largest = sizes.index(max(sizes))
    return largest or None


def _is_local_parquet(source: Any) -> bool:
    """A FileSource the DuckDB offline store would read as one local parquet file or folder."""
    if type(source) is not FileSource or not source.path or not os.path.isabs(source.path):
        return False
    parquet = isinstance(source.file_format, ParquetFormat) or (
        source.file_format is None and source.path.endswith(".parquet")
    )
    return parquet and os.path.isfile(source.path)


def _utc(value: datetime) -> datetime:
    return make_tzaware(value).astimezone(UTC)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class ViewLayout:
    """Names and types of one feature view, as Feast's materialization sees them."""

    def __init__(self, fv: FeatureView) -> None:
        self.fv = fv
        self.source = fv.batch_source
        if self.source is None:
            raise FallBackToFeast("no batch source")
        self.timestamp_field = self.source.timestamp_field
        self.created_field = self.source.created_timestamp_column or None
        self.mapping = dict(self.source.field_mapping or {})  # source column -> view name
        self.reverse = {v: k for k, v in self.mapping.items()}
        self.join_key_types = {c.name: c.dtype.to_value_type() for c in fv.entity_columns}
        self.join_keys = list(self.join_key_types)
        if not self.join_keys:
            raise FallBackToFeast("entityless view")
        self.feature_types = {f.name: f.dtype.to_value_type() for f in fv.features}
        self.features = list(self.feature_types)
        for name, vt in self.join_key_types.items():
            if vt not in JOIN_KEY_TYPES:
                raise FallBackToFeast(f"join key {name} of type {vt.name}")
        for name, vt in self.feature_types.items():
            if vt not in SCALAR_FIELDS:
                raise FallBackToFeast(f"feature {name} of type {vt.name}")
        if self.timestamp_field in self.mapping or (self.created_field and self.created_field in self.mapping):
            raise FallBackToFeast("mapped timestamp columns")

    @classmethod
    def of(cls, fv: FeatureView) -> ViewLayout:
        return cls(fv)

    def source_column(self, name: str) -> str:
        return self.reverse.get(name, name)

    def latest_sql(self, relation: str) -> str:
        """Latest row per entity: arg_max over (event time, created time), a hash aggregate instead of a sort.

        Same choice as Feast's dedup (sort by event then created timestamp, descending, nulls last): a null
        created timestamp ranks below any real one. For microsecond timestamps (the only ones read here) the pair
        ranks as one 128-bit integer, event microseconds in the high 64 bits and created ones offset into the low
        64, which DuckDB compares far faster than a struct of the two (0.23 s vs 0.37 s for 4.7 million rows)."""
        ts = _quote(self.timestamp_field)
        keys = [_quote(self.source_column(k)) for k in self.join_keys]
        payload = [f"{_quote(f)} := {_quote(self.source_column(f))}" for f in self.features]
        payload.append(f"{ts} := {ts}")
        # The event times are finite (between $start and $end) and |epoch_us| < 2^63, so the sum fits a hugeint.
        rank = f"epoch_us({ts})::hugeint * {1 << 64}"
        if self.created_field:
            created = _quote(self.created_field)
            payload.append(f"{created} := {created}")
            # -1 for null and -infinity (whose epoch_us is null), 2^64 - 1 for +infinity, else in [0, 2^64 - 2].
            rank += (
                f" + case when {created} = 'infinity' then {(1 << 64) - 1} "
                f"else coalesce(epoch_us({created})::hugeint + {1 << 63}, -1) end"
            )
        key_names = [f"{k} as {_quote(name)}" for k, name in zip(keys, self.join_keys, strict=True)]
        return (
            f"select {', '.join(_quote(k) for k in self.join_keys)}, unnest(latest) from ("
            f"select {', '.join(key_names)}, arg_max(struct_pack({', '.join(payload)}), {rank}) as latest "
            f"from {relation} where {ts} >= $start and {ts} <= $end group by all)"
        )

    def key_order_sql(self) -> str | None:
        """An ORDER BY that sorts rows as their serialised entity keys sort, when every join key is a string:
        the keys go in name order, each as its byte length (little-endian, so in numeric order below 256) then
        its UTF-8 bytes, which DuckDB compares as bytes. Sorting in DuckDB (C++, without the GIL) instead of
        serialising every key in Python first lets a view's first chunk be written sooner; past 255 bytes the
        order is merely less perfect, which costs SQLite some speed and changes nothing stored."""
        names = sorted(self.join_keys)
        if any(self.join_key_types[name] != ValueType.STRING for name in names):
            return None
        return ", ".join(f"strlen({_quote(name)}), {_quote(name)}" for name in names)


class EncodedRows:
    """One view's latest rows in Feast's online format: entity keys, serialised values, timestamps."""

    def __init__(self, table: pa.Table, layout: ViewLayout) -> None:
        self.table = table
        self.layout = layout
        self.n = table.num_rows
        self.entity_keys: list[bytes] = []
        self.values: dict[str, list[bytes]] = {}
        self.event_us: list[int] = []
        self.created_us: list[int | None] = []
        self._texts: dict[str, list[str | None]] = {}

    @classmethod
    def build(cls, table: pa.Table, layout: ViewLayout, entity_keys: list[bytes]) -> EncodedRows:
        """`entity_keys`: the table's keys in Feast's v3 serialisation (`_entity_keys`)."""
        rows = cls(table, layout)
        rows.entity_keys = entity_keys
        for name, vt in layout.feature_types.items():
            rows.values[name] = _encode_column(table.column(name), vt)
        rows.event_us = _micros(table.column(layout.timestamp_field))
        rows.created_us = (
            _micros(table.column(layout.created_field)) if layout.created_field else [None] * table.num_rows
        )
        return rows

    def texts(self, name: str) -> list[str | None]:
        """The value_text column Feast's SQLite store fills (extract_text_and_num): str() of the stored value."""
        if name not in self._texts:
            self._texts[name] = _texts(self.table.column(name), self.layout.feature_types[name])
        return self._texts[name]

    def verify_against_feast(self, fv: FeatureView, timestamp_kind: str) -> None:
        """Re-encode these rows with Feast's own code; any difference hands the view back to Feast."""
        if self.n == 0:
            return
        expected = _convert_arrow_to_proto(self.table, fv, self.layout.join_key_types)
        for i, (key, values, event_ts, created_ts) in enumerate(expected):
            if serialize_entity_key(key, entity_key_serialization_version=3) != self.entity_keys[i]:
                raise FallBackToFeast(f"entity key of row {i} differs from Feast's encoding")
            for name, proto in values.items():
                if proto.SerializeToString() != self.values[name][i]:
                    raise FallBackToFeast(f"value of {name} in row {i} differs from Feast's encoding")
                if timestamp_kind == "sqlite" and _feast_text(proto) != self.texts(name)[i]:
                    raise FallBackToFeast(f"value_text of {name} in row {i} differs from Feast's")
            if timestamp_kind == "redis":
                if _redis_ts(event_ts) != _redis_ts(_from_micros(self.event_us[i])):
                    raise FallBackToFeast(f"event timestamp of row {i} differs")
            else:
                if _sqlite_ts(event_ts) != _sqlite_ts(_from_micros(self.event_us[i])):
                    raise FallBackToFeast(f"event timestamp of row {i} differs")
                mine = self.created_us[i]
                # A null created timestamp reaches Feast as NaT, which its SQLite store cannot even write; None here.
                theirs = None if created_ts is None or created_ts != created_ts else _sqlite_ts(created_ts)
                if theirs != (None if mine is None else _sqlite_ts(_from_micros(mine))):
                    raise FallBackToFeast(f"created timestamp of row {i} differs")


def _entity_keys(table: pa.Table, layout: ViewLayout) -> list[bytes]:
    """Feast's v3 serialisation (key_encoding_utils.serialize_entity_key) for string and int64 join keys."""
    names = sorted(layout.join_keys)
    head = [struct.pack("<I", len(names))]
    for name in names:
        encoded = name.encode("utf8")
        head.append(struct.pack("<II", ValueType.STRING.value, len(encoded)) + encoded)
    prefix = b"".join(head)
    parts: list[list[bytes]] = []
    for name in names:
        if layout.join_key_types[name] == ValueType.STRING:
            encoded = table.column(name).cast(pa.binary()).to_pylist()
            heads = {n: struct.pack("<II", ValueType.STRING.value, n) for n in {len(v) for v in encoded}}
            parts.append([heads[len(v)] + v for v in encoded])
        else:
            int_tag = struct.pack("<II", ValueType.INT64.value, 8)
            pack = struct.Struct("<q").pack
            parts.append([int_tag + pack(v) for v in table.column(name).to_pylist()])
    if len(parts) == 1:
        return [prefix + p for p in parts[0]]
    return [prefix + b"".join(p) for p in zip(*parts, strict=True)]


# Floating-point values are one tag byte and the IEEE bytes: built for a whole column at once with numpy.
# The tag is taken from protobuf itself, and verify_against_feast compares the result with Feast's encoding.
_FIXED_WIDTH = {
    ValueType.DOUBLE: (ValueProto(double_val=1.0).SerializeToString()[:-8], "<f8"),
    ValueType.FLOAT: (ValueProto(float_val=1.0).SerializeToString()[:-4], "<f4"),
}


def _encode_column(column: pa.ChunkedArray, vt: ValueType) -> list[bytes]:
    """Serialised ValueProto per cell; b"" (an empty Value) for null and NaN, which Feast also treats as null."""
    if vt in _FIXED_WIDTH:
        return _encode_fixed_width(column, vt)
    # Other scalars repeat a lot (counts, categories, ids): serialise each distinct value once.
    field, convert = SCALAR_FIELDS[vt]
    message = ValueProto()
    cache: dict[Any, bytes] = {None: b""}

    def encode(v: Any) -> bytes:
        setattr(message, field, convert(v))
        out = cache[v] = message.SerializeToString()
        return out

    get = cache.get
    return [cell if (cell := get(v)) is not None else encode(v) for v in column.to_pylist()]


def _encode_fixed_width(column: pa.ChunkedArray, vt: ValueType) -> list[bytes]:
    tag, dtype = _FIXED_WIDTH[vt]
    values = column.to_numpy(zero_copy_only=False).astype(dtype)  # nulls arrive as NaN
    n, width = len(values), len(tag) + np.dtype(dtype).itemsize
    if n == 0:
        return []
    cells = np.empty((n, width), dtype=np.uint8)
    cells[:, : len(tag)] = np.frombuffer(tag, dtype=np.uint8)
    cells[:, len(tag) :] = values.view(np.uint8).reshape(n, -1)
    raw = cells.tobytes()
    out = [raw[i : i + width] for i in range(0, n * width, width)]
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = b""
    return out


def _picker(index: Sequence[int]) -> Callable[[Sequence[Any]], list[Any]]:
    """`pick(seq)` = [seq[i] for i in index], in C (operator.itemgetter)."""
    if len(index) == 0:
        return lambda seq: []
    if len(index) == 1:
        (only,) = index
        return lambda seq: [seq[only]]
    getter = operator.itemgetter(*index)
    return lambda seq: list(getter(seq))


def _texts(column: pa.ChunkedArray, vt: ValueType) -> list[str | None]:
    values = column.to_pylist()
    if vt == ValueType.STRING:
        return values
    if vt == ValueType.FLOAT:  # the stored float32, widened back the way protobuf returns it
        values = [None if v is None else float(np.float32(v)) for v in values]
    texts: list[str | None] = list(map(str, values))
    missing = pc.is_null(column, nan_is_null=True) if pa.types.is_floating(column.type) else column.is_null()
    for i in np.flatnonzero(missing.to_numpy(zero_copy_only=False)).tolist():
        texts[i] = None
    return texts


def _feast_text(proto: ValueProto) -> str | None:
    kind = proto.WhichOneof("val")
    if kind is None:
        return None
    if kind == "string_val":
        return proto.string_val
    return str(getattr(proto, kind))


def _micros(column: pa.ChunkedArray) -> list[int | None]:
    if not pa.types.is_timestamp(column.type):
        raise FallBackToFeast(f"timestamp column of type {column.type}")
    return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64()).to_pylist()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _redis_ts(value: datetime) -> bytes:
    ts = Timestamp()
    ts.FromDatetime(make_tzaware(value))
    return ts.SerializeToString()


def _sqlite_ts(value: datetime) -> int:
    # What Feast's SQLite store stores: to_naive_utc, then its registered adapter int(naive.timestamp()).
    return int(to_naive_utc(value).timestamp())


def _cached(fn: Callable[[datetime], Any]) -> Callable[[int | None], Any]:
    cache: dict[int | None, Any] = {None: None}

    def convert(us: int | None) -> Any:
        try:
            return cache[us]
        except KeyError:
            out = cache[us] = fn(_from_micros(us))  # type: ignore[arg-type]
            return out

    return convert


class OnlineWriter:
    timestamp_kind = "sqlite"

    def resume_from(self, config: RepoConfig, fv: FeatureView, start: datetime, end: datetime) -> datetime:
        """Where this run must start reading so the store ends up complete (the requested start by default)."""
        return start

    in_key_order = False  # whether the rows reach `plan` sorted by entity key, in chunks of `chunk_rows`

    def plan(self, config: RepoConfig, fv: FeatureView, layout: ViewLayout) -> Callable[[EncodedRows], Any]:
        """The part of the write that needs no connection, applied to each chunk on the reading thread."""
        return lambda rows: rows

    def write(self, config: RepoConfig, fv: FeatureView, chunks: Iterator[Any], chunk_rows: int) -> None:
        """Write the planned chunks, as they arrive, in one go: a failure leaves the store as it was, or (where
        the store has no transactions) holding a prefix of the rows, each one complete."""
        raise NotImplementedError

    def written_up_to(self, config: RepoConfig, fv: FeatureView, end: datetime) -> None:
        """Record in the store itself that it now holds this view up to `end`."""


class SqliteWriter(OnlineWriter):
    """Feast's SqliteOnlineStore upsert in one transaction, rows in primary-key order (entity key, feature name)
    so both of the table's B-tree indexes are filled in order instead of at random, and many rows per
    statement: one `INSERT ... VALUES (...), (...), ... ON CONFLICT DO UPDATE` of about ROWS_PER_STATEMENT
    rows costs SQLite and the sqlite3 module far less per row than one statement per row. The rows of an
    entity share its key and timestamps through numbered parameters and the feature names are literals of the
    statement, so an entity binds 3 + 2 x features values instead of 6 x features (the rows are distinct keys,
    so the result is the same as Feast's row-by-row upsert; tests/platform_common checks it byte for byte)."""

    timestamp_kind = "sqlite"
    ROWS_PER_STATEMENT = 200  # (entity, feature) rows; measured: a few hundred is best, thousands are slow
    COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")

    def __init__(self, store: SqliteOnlineStore) -> None:
        self.store = store

    in_key_order = True

    def plan(self, config: RepoConfig, fv: FeatureView, layout: ViewLayout) -> Callable[[EncodedRows], list[Batch]]:
        names = sorted(layout.features)
        per_entity = 3 + 2 * len(names)  # key, event, created, then value and text per feature
        limit = _sqlite_variable_limit()
        if per_entity > limit:
            raise FallBackToFeast(f"{len(names)} features exceed SQLite's {limit} parameters per statement")
        per_statement = max(1, min(self.ROWS_PER_STATEMENT // max(1, len(names)), limit // per_entity))
        table = _quote(compute_table_id(config.project, fv, config.registry.enable_online_feature_view_versioning))
        statements: dict[int, str] = {}
        to_ts = _cached(_sqlite_ts)

        def upsert(n_entities: int) -> str:
            if n_entities not in statements:
                statements[n_entities] = _sqlite_upsert(table, self.COLUMNS, names, n_entities)
            return statements[n_entities]

        def batches(rows: EncodedRows) -> list[Batch]:
            if not names:
                return []
            # Parameters in statement order, laid out with strided slice assignments. Blobs as bytearray: the
            # sqlite3 module binds int, float, str and bytearray directly but sends `bytes` through its adapter
            # lookup first, which took ~0.5 us a value, a third of SQLite's whole insert time.
            flat: list[Any] = [None] * (rows.n * per_entity)
            flat[0::per_entity] = list(map(bytearray, rows.entity_keys))
            flat[1::per_entity] = [to_ts(us) for us in rows.event_us]
            flat[2::per_entity] = [to_ts(us) for us in rows.created_us]
            for j, name in enumerate(names):
                flat[3 + 2 * j :: per_entity] = list(map(bytearray, rows.values[name]))
                flat[4 + 2 * j :: per_entity] = rows.texts(name)
            step = per_statement * per_entity  # parameters per full statement
            whole = len(flat) // step * step
            out: list[Batch] = []
            if whole:
                out.append((upsert(per_statement), [flat[k : k + step] for k in range(0, whole, step)]))
            if whole < len(flat):
                out.append((upsert((len(flat) - whole) // per_entity), [flat[whole:]]))
            return out

        return batches

    def write(self, config: RepoConfig, fv: FeatureView, chunks: Iterator[list[Batch]], chunk_rows: int) -> None:
        conn = self.store._get_conn(config)
        with conn:
            for batches in chunks:
                for sql, params in batches:
                    conn.executemany(sql, params)


Batch = tuple[str, list[list[Any]]]  # a statement, and the parameters of each of its executions


def _sqlite_upsert(table: str, columns: Sequence[str], names: Sequence[str], n_entities: int) -> str:
    """Feast's upsert for `n_entities` entities of the view's features, numbered parameters per entity."""
    per_entity = 3 + 2 * len(names)
    literals = ["'" + name.replace("'", "''") + "'" for name in names]
    tuples = []
    for e in range(n_entities):
        base = e * per_entity
        for j, name in enumerate(literals):
            tuples.append(f"(?{base + 1}, {name}, ?{base + 4 + 2 * j}, ?{base + 5 + 2 * j}, ?{base + 2}, ?{base + 3})")
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(tuples)} "
        "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
        "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;"
    )


def _sqlite_variable_limit() -> int:
    """The most parameters a statement may have in this process's SQLite (the limit Feast's connection has)."""
    con = sqlite3.connect(":memory:")
    try:
        return con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        con.close()


@dataclass(frozen=True)
class QueriedView:
    """A view's latest rows, as queried (FastComputeEngine._query_view)."""

    writer: OnlineWriter
    layout: ViewLayout
    start: datetime
    table: pa.Table
    sorted: bool  # already in the writer's key order
    started: float  # perf_counter at the start of the query


@dataclass(frozen=True)
class ReadView:
    """A view read and ready to be written chunk by chunk."""

    writer: OnlineWriter
    start: datetime
    rows: int
    seconds: float  # from the start of the read until its chunks can be laid out


@dataclass(frozen=True)
class _Chunk:
    payload: Any


@dataclass(frozen=True)
class _ViewEnd:
    error: BaseException | None  # what stopped the reading thread short of the view's last chunk


class _ViewChunks:
    """One view's chunks, taken off the queue as the writer asks for them; `drain` takes the rest."""

    def __init__(self, channel: queue.Queue[Any]) -> None:
        self.channel = channel
        self.done = False
        self.waited = 0.0  # seconds the writer spent waiting for chunks

    def __iter__(self) -> Iterator[Any]:
        while not self.done:
            asked = time.perf_counter()
            item = self.channel.get()
            self.waited += time.perf_counter() - asked
            if isinstance(item, _ViewEnd):
                self.done = True
                if item.error is not None:
                    raise item.error
                return
            yield item.payload

    def drain(self, quietly: bool = False) -> None:
        try:
            for _ in self:
                pass
        except BaseException:
            if not quietly:
                raise


class RedisWriter(OnlineWriter):
    """Feast's Redis hash layout, written as raw pipelined RESP over one connection of the store's client."""

    timestamp_kind = "redis"

    def __init__(self, store: RedisOnlineStore) -> None:
        self.store = store

    @staticmethod
    def watermark_key(project: str) -> bytes:
        """A hash per Feast project: view name -> microseconds up to which the store holds the view."""
        return f"shoprank:feast_fast_engine:watermarks:{project}".encode()

    def resume_from(self, config: RepoConfig, fv: FeatureView, start: datetime, end: datetime) -> datetime:
        """The requested start, unless the store itself says it holds less: a Redis without persistence that
        restarted (the watermark went with the data) or one restored from an older snapshot. Then from the
        watermark, or with none from the TTL horizon (all the history when the view has no TTL), which is the
        whole window a read can still see."""
        client = self.store._get_client(config.online_store)
        stored = client.hget(self.watermark_key(config.project), fv.name)
        held = _from_micros(int(stored)) if stored else None
        if held is not None and held >= _utc(start):
            return start
        horizon = _utc(end) - fv.ttl if fv.ttl else _EPOCH
        resume = held if held is not None else horizon
        if resume < _utc(start):
            log.warning(
                "%s: the online store holds it up to %s, though the registry says %s; reading from there",
                fv.name,
                held.isoformat(timespec="seconds") if held else "nothing (restarted or flushed)",
                _utc(start).isoformat(timespec="seconds"),
            )
            return resume
        return start

    def written_up_to(self, config: RepoConfig, fv: FeatureView, end: datetime) -> None:
        client = self.store._get_client(config.online_store)
        micros = (_utc(end) - _EPOCH) // timedelta(microseconds=1)
        client.hset(self.watermark_key(config.project), fv.name, str(micros))

    def write(self, config: RepoConfig, fv: FeatureView, chunks: Iterator[EncodedRows], chunk_rows: int) -> None:
        store_config = config.online_store
        client = self.store._get_client(store_config)
        view = compute_versioned_name(fv, config.registry.enable_online_feature_view_versioning)
        ts_field = f"_ts:{view}".encode()
        project = config.project.encode("utf-8")
        ttl = store_config.key_ttl_seconds
        features = [f.name for f in fv.features]
        # HSET <key> _ts:<view> <Timestamp> <mmh3(view:feature)> <Value> ...: each "field value" pair is encoded
        # once per column, each key once, then every command is one join.
        hset_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (len(features) + 1))
        ts_cell = _cached(lambda dt: _bulk(ts_field) + _bulk(_redis_ts(dt)))
        heads = [_bulk(_mmh3(f"{view}:{name}")) for name in features]
        expire = b"$%d\r\n%d\r\n" % (len(str(ttl)), ttl) if ttl else b""
        # Two connections: while redis-server applies one chunk's HSETs (read back on `sender` by a thread that
        # waits in recv, without the GIL), this thread checks stored timestamps for the next chunk and builds it.
        # Chunks hold distinct entity keys (one latest row per entity), so their order between them is free.
        pool = client.connection_pool
        conn, sender = pool.get_connection(), pool.get_connection()
        in_flight: Future | None = None
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-write") as executor:
                for rows in chunks:  # as the reading thread encodes them
                    values = [rows.values[name] for name in features]
                    keys = [b"$%d\r\n%s%s\r\n" % (len(k) + len(project), k, project) for k in rows.entity_keys]
                    for lo in range(0, rows.n, chunk_rows):
                        hi = min(lo + chunk_rows, rows.n)
                        keep: Sequence[int] = range(lo, hi)
                        if not store_config.skip_dedup:
                            keep = self._newer(conn, keys, ts_field, rows.event_us, lo, hi)
                        columns = [_resp_pairs(head, col[lo:hi]) for head, col in zip(heads, values, strict=True)]
                        out: list[bytes] = []
                        for i in keep:
                            cells = [c[i - lo] for c in columns]
                            out.append(b"".join([hset_head, keys[i], ts_cell(rows.event_us[i]), *cells]))
                            if ttl:
                                out.append(b"*3\r\n$6\r\nEXPIRE\r\n" + keys[i] + expire)
                        if in_flight is not None:
                            in_flight.result()  # raises the chunk's error; at most one chunk is in flight
                            in_flight = None
                        if out:
                            in_flight = executor.submit(_roundtrip_integers, sender, b"".join(out), len(out))
                if in_flight is not None:
                    in_flight.result()
        except BaseException:
            conn.disconnect()
            sender.disconnect()
            raise
        finally:
            pool.release(conn)
            pool.release(sender)

    @staticmethod
    def _newer(
        conn: Any, keys: Sequence[bytes], ts_field: bytes, event_us: Sequence[int], lo: int, hi: int
    ) -> list[int]:
        """Rows whose event time is newer than the one stored (Feast skips a row whose timestamp is not newer)."""
        # One EVAL returning every stored timestamp as one array: parsed in C, not reply by reply in Python.
        n = hi - lo
        head = b"*%d\r\n$4\r\nEVAL\r\n%s$%d\r\n%d\r\n" % (n + 4, _bulk(_HGET_ALL), len(str(n)), n)
        (stored,) = _roundtrip(conn, b"".join([head, *keys[lo:hi], _bulk(ts_field)]), 1)
        parsed: dict[bytes, int] = {}
        keep = []
        for i, previous in zip(range(lo, hi), stored, strict=True):
            if previous:
                nanos = parsed.get(previous)
                if nanos is None:
                    ts = Timestamp()
                    ts.ParseFromString(previous)
                    nanos = parsed[previous] = ts.seconds * 1_000_000_000 + ts.nanos
                if event_us[i] * 1000 <= nanos:
                    continue
            keep.append(i)
        return keep


_HGET_ALL = b"local out = {} for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end return out"


def _resp_pairs(head: bytes, values: list[bytes]) -> list[bytes]:
    """`head` followed by each value as a RESP bulk string; one numpy pass when the values share a length."""
    lengths = {len(v) for v in values}
    if len(lengths - {0}) != 1 or not values:
        return [b"%s$%d\r\n%s\r\n" % (head, len(v), v) for v in values]
    (width,) = lengths - {0}
    prefix = head + b"$%d\r\n" % width
    n = len(values)
    filled = [v or bytes(width) for v in values] if 0 in lengths else values
    cells = np.empty((n, len(prefix) + width + 2), dtype=np.uint8)
    cells[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    cells[:, len(prefix) : len(prefix) + width] = np.frombuffer(b"".join(filled), dtype=np.uint8).reshape(n, width)
    cells[:, -2:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    raw, step = cells.tobytes(), cells.shape[1]
    out = [raw[i : i + step] for i in range(0, n * step, step)]
    if 0 in lengths:
        empty = head + b"$0\r\n\r\n"
        for i, v in enumerate(values):
            if not v:
                out[i] = empty
    return out


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _roundtrip(conn: Any, payload: bytes, replies: int) -> list[Any]:
    """Send pipelined commands on a redis-py connection and read their replies with hiredis directly (redis-py's
    per-reply Python path costs more than building the commands)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    conn.send_packed_command([payload], check_health=False)
    if hiredis is None:  # redis-py's own parser, slower
        out = [conn.read_response() for _ in range(replies)]
        for reply in out:
            if isinstance(reply, ResponseError):
                raise reply
        return out
    sock = conn._sock
    reader = hiredis.Reader()
    out = []
    gets = reader.gets
    while len(out) < replies:
        reply = gets()
        if reply is False:
            try:
                data = sock.recv(1 << 20)
            except OSError as exc:
                raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
            if not data:
                raise RedisConnectionError("Connection closed by server.")
            reader.feed(data)
            continue
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        out.append(reply)
    return out


def _roundtrip_integers(conn: Any, payload: bytes, replies: int) -> None:
    """Like _roundtrip for commands whose replies are non-negative integers (HSET, EXPIRE): each reply is one
    `:<n>` line, so counting lines is parsing them; an error reply (`-ERR ...`) is raised."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    conn.send_packed_command([payload], check_health=False)
    sock = conn._sock
    seen, tail = 0, b""
    while seen < replies:
        try:
            data = sock.recv(1 << 20)
        except OSError as exc:
            raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
        if not data:
            raise RedisConnectionError("Connection closed by server.")
        data = tail + data
        if b"-" in data:
            start = data.index(b"-")
            raise ResponseError(data[start + 1 :].split(b"\r\n", 1)[0].decode(errors="replace"))
        seen += data.count(b"\r\n")
        tail = data[data.rfind(b"\r\n") + 2 :] if b"\r\n" in data else data
    if seen > replies:
        raise RedisConnectionError(f"expected {replies} replies, got {seen}: connection out of sync")
