"""The stream processor: read a batch, apply the window rule, log and push the rows, checkpoint, acknowledge.

Per batch, in this order (so a crash anywhere repeats work, never loses or double-counts it):

1. read up to `batch_size` events for the consumer group (unacknowledged ones first after a restart);
2. parse each; malformed, late and duplicate events go to the quarantine with their reason;
3. the accepted ones update the engine (transforms/streaming/windows.py), in arrival order;
4. one row per entity touched, its state after the batch, stamped `visible_at` (the batch's wall clock,
   strictly increasing across batches and restarts): written to the offline log, then pushed online through
   Feast's push API (`PushMode.ONLINE`). A failed push is retried with the same rows and stamp;
5. the engine is checkpointed: the batch's messages appended to the journal next to the snapshot
   `$SHOPRANK_HOME/stream/checkpoint-<group>.pkl`, which is rewritten (atomic rename) now and then
   (transforms/streaming/checkpoint.py);
6. the batch is acknowledged.

A crash before 5 re-reads the batch after the restart from the previous checkpoint: the events are applied
again to the state they were first applied to, so the rows are the same values with a later `visible_at`
(the log holds them twice; the join picks whichever was visible at its time, which is what the online store
served). A crash between 5 and 6 re-reads events the checkpoint already holds: the checkpoint keeps the message ids
of its last `RECENT_BATCHES` batches, so such a redelivery is acknowledged and skipped, counted nowhere (without
it the accepted events would be dropped as duplicates, right for the features but inflating the duplicate and
malformed counts). A message id older than that falls back to the event-id rule (a duplicate).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from platform_common.event_stream import EventStream, Message
from platform_common.stream_log import KEYS, PRODUCT_VIEW, USER_VIEW, schema, write_part
from transforms.streaming.checkpoint import (
    RECENT_BATCHES,
    Checkpoint,
    CheckpointWriter,
    apply_messages,
    checkpoint_exists,
    checkpoint_path,
    finish_batch,
    load_checkpoint,
    save_checkpoint,
)
from transforms.streaming.windows import Engine

log = logging.getLogger("shoprank.stream")

GROUP = "stream-features"
STAGES = ("read", "logged", "pushed", "checkpointed")  # where `Processor.failpoint` is called, in batch order
PUSH_SOURCES = {USER_VIEW: "user_stream_push", PRODUCT_VIEW: "product_stream_push"}
QUARANTINE_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("reason", pa.string()),
        ("payload", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)


class Pusher(Protocol):
    def push(self, push_source_name: str, df: pd.DataFrame) -> None: ...


class FeastPusher:
    """Feast's push API into the online store (SQLite locally, Redis under prod)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def push(self, push_source_name: str, df: pd.DataFrame) -> None:
        from feast.data_source import PushMode

        self.store.push(push_source_name, df, to=PushMode.ONLINE)


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class BatchResult:
    read: int
    accepted: int
    quarantined: dict[str, int]
    rows: dict[str, int]
    visible_at: int | None
    # per view, visible time minus the event time each row describes, seconds (the processor's metrics)
    delays: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # messages skipped because the checkpoint already held them (a redelivery after a lost acknowledgement)
    redelivered: int = 0
    # wall clock (epoch ns) of the batch's steps: read started, read returned, push started, each view pushed
    # (`pushed_<view>`), push done, acked
    # (`run --timings`, benchmarks/stream.py's decomposition)
    timings: dict[str, int] = field(default_factory=dict)


def rows_frame(view: str, rows: Sequence[dict[str, Any]], visible_us: int | Sequence[int]) -> pa.Table:
    """The log's / the push's rows: each entity's state, stamped visible at `visible_us` (one time for all, or
    one per row)."""
    frame = pd.DataFrame(list(rows))
    frame["event_time"] = pd.to_datetime(frame["event_time"], unit="us", utc=True)
    visible = [visible_us] * len(frame) if isinstance(visible_us, int) else list(visible_us)
    frame["event_timestamp"] = pd.to_datetime(pd.Series(visible, dtype="int64"), unit="us", utc=True)
    frame["created_timestamp"] = frame["event_timestamp"]
    return pa.Table.from_pandas(frame[schema(view).names], schema=schema(view), preserve_index=False)


class Processor:
    def __init__(
        self,
        stream: EventStream,
        pusher: Pusher | None,
        stream_dir: Path,
        log_dir: Path,
        *,
        group: str = GROUP,
        consumer: str = "processor-1",
        batch_size: int = 5_000,
        clock: Callable[[], int] = now_us,
        push_retry_seconds: float = 1.0,
        failpoint: Callable[[str, int], None] | None = None,
        catalogue: Mapping[str, str] | None = None,
    ) -> None:
        """`catalogue`: product -> category_l1 for the click categories (transforms/streaming/catalogue.py, as the
        backfill reads it); None: every click's category is unknown (tests that do not look at categories)."""
        self.stream, self.pusher = stream, pusher
        self.stream_dir, self.log_dir = stream_dir, log_dir
        self.group, self.consumer, self.batch_size = group, consumer, batch_size
        self.clock = clock
        self.push_retry_seconds = push_retry_seconds
        self.checkpoint_file = checkpoint_path(stream_dir, group)
        self.catalogue: Mapping[str, str] = {} if catalogue is None else catalogue
        self.state = load_checkpoint(self.checkpoint_file, self.catalogue, repair=True)  # catalogue: not saved
        self.writer = CheckpointWriter(self.checkpoint_file)
        # called as failpoint(stage, batch) at each of STAGES (batch counts this process's non-empty batches from
        # 1): the fault tests SIGKILL the process there (`run --crash-at`); None in normal runs
        self.failpoint = failpoint
        self.processed = 0

    def recover(self, stream: EventStream) -> None:
        """After a transport or store error: a fresh connection and the state of the last checkpoint, exactly as
        a restarted process would start (what was read since is delivered again)."""
        with contextlib.suppress(Exception):  # the old connection is already broken; nothing to release
            self.stream.close()
        self.stream = stream
        self.writer.close()
        self.state = load_checkpoint(self.checkpoint_file, self.catalogue, repair=True)
        self.writer = CheckpointWriter(self.checkpoint_file)

    def _fail(self, stage: str) -> None:
        if self.failpoint is not None:
            self.failpoint(stage, self.processed)

    @property
    def engine(self) -> Engine:
        return self.state.engine

    def step(self, block_ms: int = 0, should_stop: Callable[[], bool] = lambda: False) -> BatchResult:
        """One batch (possibly empty)."""
        started = time.time_ns()
        messages = self.stream.read(self.group, self.consumer, self.batch_size, block_ms=block_ms)
        if not messages:
            return BatchResult(0, 0, {}, {}, None)
        return self.process(messages, should_stop, read_started=started)

    def process(
        self,
        messages: Sequence[Message],
        should_stop: Callable[[], bool] = lambda: False,
        read_started: int | None = None,
    ) -> BatchResult:
        timings = {"read_done": time.time_ns()}
        timings["read_started"] = read_started or timings["read_done"]
        self.processed += 1
        self._fail("read")
        done = frozenset().union(*self.state.recent_ids)
        redelivered = [m.id for m in messages if m.id in done]
        if redelivered:  # processed and checkpointed before a crash, never acknowledged: acknowledge only
            self.stream.ack(self.group, redelivered)
            messages = [m for m in messages if m.id not in done]
            if not messages:
                return BatchResult(len(redelivered), 0, {}, {}, None, redelivered=len(redelivered))
        engine = self.engine
        pairs = [(m.id, m.payload) for m in messages]  # applied now, journaled at the checkpoint
        applied = apply_messages(engine, pairs)
        quarantine, users, products, accepted = applied.quarantine, applied.users, applied.products, applied.accepted
        visible = max(self.clock(), self.state.last_visible_us + 1)
        rows = {
            USER_VIEW: [engine.user_row(u) for u in sorted(users)],
            PRODUCT_VIEW: [engine.product_row(p) for p in sorted(products)],
        }
        tables = {view: rows_frame(view, r, visible) for view, r in rows.items() if r}
        for view, table in tables.items():
            write_part(self.log_dir, view, table, f"part-{visible:016d}")
        if quarantine:
            self._quarantine(quarantine, visible)
        self._fail("logged")
        timings["push_started"] = time.time_ns()
        for view, table in tables.items():
            self._push(view, table, should_stop)
            timings[f"pushed_{view}"] = time.time_ns()
        timings["push_done"] = time.time_ns()
        self._fail("pushed")
        finish_batch(self.state, (m.id for m in messages), visible)
        self.writer.commit(self.state, pairs, visible, applied.categories)
        timings["checkpointed"] = time.time_ns()
        self._fail("checkpointed")
        self.stream.ack(self.group, [m.id for m in messages] + redelivered)
        timings["acked"] = time.time_ns()
        reasons: dict[str, int] = {}
        for _, reason, _ in quarantine:
            reasons[reason] = reasons.get(reason, 0) + 1
        delays = {
            v: tuple((visible - t.column("event_time").cast(pa.int64()).to_numpy()) / 1e6) for v, t in tables.items()
        }
        return BatchResult(
            len(messages) + len(redelivered),
            accepted,
            reasons,
            {v: t.num_rows for v, t in tables.items()},
            visible,
            delays,
            redelivered=len(redelivered),
            timings=timings,
        )

    def _push(self, view: str, table: pa.Table, should_stop: Callable[[], bool]) -> None:
        if self.pusher is None:
            return
        frame = table.drop_columns(["event_time", "last_event_id"]).to_pandas()
        while True:
            try:
                self.pusher.push(PUSH_SOURCES[view], frame)
                return
            except Exception as exc:  # the online store is down: keep the rows, retry, never drop them
                if should_stop():
                    raise
                log.warning("push of %s failed (%s); retrying in %.1f s", view, exc, self.push_retry_seconds)
                time.sleep(self.push_retry_seconds)

    def _quarantine(self, rows: list[tuple[str, str, str]], visible: int) -> None:
        folder = self.stream_dir / "quarantine"
        folder.mkdir(parents=True, exist_ok=True)
        at = pa.array([visible] * len(rows), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        table = pa.Table.from_arrays(
            [pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows]), pa.array([r[2] for r in rows]), at],
            schema=QUARANTINE_SCHEMA,
        )
        tmp = folder / f".part-{visible:016d}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(folder / f"part-{visible:016d}.parquet")


def read_quarantine(stream_dir: Path) -> pa.Table:
    """Every quarantined message once (the first time it was quarantined): a crash before the checkpoint replays
    its batch, which writes that batch's quarantine rows again under a later part."""
    parts = sorted((stream_dir / "quarantine").glob("*.parquet"))
    if not parts:
        return QUARANTINE_SCHEMA.empty_table()
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    seen: set[str] = set()
    keep = []
    for i, message_id in enumerate(table.column("message_id").to_pylist()):
        if message_id not in seen:
            seen.add(message_id)
            keep.append(i)
    return table.take(pa.array(keep, pa.int64())) if len(keep) < table.num_rows else table


# re-exported from checkpoint.py: the CLI, the backfill and the tests reach the checkpoint through the processor
__all__ = [
    "GROUP",
    "KEYS",
    "RECENT_BATCHES",
    "BatchResult",
    "Checkpoint",
    "FeastPusher",
    "Processor",
    "checkpoint_exists",
    "checkpoint_path",
    "load_checkpoint",
    "read_quarantine",
    "save_checkpoint",
]
