"""The Feast batch engine: runs every view of a `feast materialize` run, reading on one thread while writing on
another (see FastComputeEngine.materialize)."""

from __future__ import annotations

import operator
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
from feast import FeatureView
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import StrictInt

from platform_common.feast_fast_engine.encode import EncodedRows, encode_entity_keys
from platform_common.feast_fast_engine.layout import FallBackToFeast, ViewLayout, log, utc
from platform_common.feast_fast_engine.online_writer import OnlineWriter
from platform_common.feast_fast_engine.query import key_order_sql, largest_source, latest_rows
from platform_common.feast_fast_engine.redis_writer import RedisWriter
from platform_common.feast_fast_engine.sqlite_writer import SqliteWriter

# The `batch_engine.type` of feature_store.yaml: Feast imports the package and takes FastComputeEngine and
# FastComputeEngineConfig from it (feast.repo_config.get_batch_engine_config_from_type).
ENGINE_TYPE: Literal["platform_common.feast_fast_engine.FastComputeEngine"] = (
    "platform_common.feast_fast_engine.FastComputeEngine"
)


class FastComputeEngineConfig(FeastConfigBaseModel):
    """Options of the fast engine (all optional)."""

    type: Literal["platform_common.feast_fast_engine.FastComputeEngine"] = ENGINE_TYPE
    chunk_rows: StrictInt = 20_000
    """Entity rows encoded and sent per round trip."""
    verify_rows: StrictInt = 64
    """Leading rows of every view re-encoded with Feast's own functions before writing (0 disables)."""
    backend: str | None = None
    """Passed to Feast's local engine for the views it handles."""


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
        largest = largest_source(tasks)
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
        order_by = key_order_sql(layout) if writer.in_key_order else None
        table = latest_rows(
            self._duckdb, self.offline_store, self.repo_config, layout, start, task.end_time, order_by=order_by
        )
        return QueriedView(writer, layout, start, table, order_by is not None, started)

    def _read_view(self, task: MaterializationTask, queried: QueriedView) -> tuple[ReadView, Iterator[Any]]:
        fv, writer, layout, table = task.feature_view, queried.writer, queried.layout, queried.table
        if table.num_rows == 0:
            return ReadView(writer, queried.start, 0, time.perf_counter() - queried.started), iter(())
        if writer.in_key_order and not queried.sorted:  # every key first, to sort by
            keys = encode_entity_keys(table, layout)
            order = sorted(range(table.num_rows), key=keys.__getitem__)
            table, keys = table.take(order), _picker(order)(keys)

            def keys_of(part: pa.Table, lo: int) -> list[bytes]:
                return keys[lo : lo + part.num_rows]
        else:  # each chunk's keys as it is encoded, sorted already if the writer wants them so

            def keys_of(part: pa.Table, lo: int) -> list[bytes]:
                return encode_entity_keys(part, layout)

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
            utc(read.start).isoformat(timespec="seconds"),
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


def _picker(index: Sequence[int]) -> Callable[[Sequence[Any]], list[Any]]:
    """`pick(seq)` = [seq[i] for i in index], in C (operator.itemgetter)."""
    if len(index) == 0:
        return lambda seq: []
    if len(index) == 1:
        (only,) = index
        return lambda seq: [seq[only]]
    getter = operator.itemgetter(*index)
    return lambda seq: list(getter(seq))
