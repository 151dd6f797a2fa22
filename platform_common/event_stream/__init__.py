"""The event stream: live shoppers publish what they land, the stream processor reads it (issue 17).

One interface, two transports, one module per external system:

- `sqlite_stream.SqliteStream` (the embedded default): an append-only SQLite table under
  `$SHOPRANK_HOME/stream/events.db` (WAL, so the publisher and the processor never block each other for long),
  an autoincrement offset per event and one committed offset per consumer group. No server.
- `redis_stream.RedisStream` (`SHOPRANK_PROFILE=prod`): a Redis Stream (XADD with MAXLEN ~), a consumer group
  (XREADGROUP / XACK), and after a restart the consumer's own pending entries first, then XAUTOCLAIM of the
  entries other consumers of the group left pending.

Delivery is at least once: an event read but not acknowledged is read again after a restart. The processor is
idempotent by event id (transforms/streaming/windows.py), so a redelivery never counts twice.

Events are JSON objects (`transforms.streaming.events` names the fields); the transport never looks inside them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from platform_common.settings import Settings


@dataclass(frozen=True)
class Message:
    """One delivered event: the transport's id (to acknowledge) and the raw payload (parsed by the reader, so a
    malformed one can be quarantined with its text)."""

    id: str
    payload: bytes


class EventStream(Protocol):
    def publish(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Append events; returns how many."""
        ...

    def publish_raw(self, payloads: Sequence[bytes]) -> int:
        """Append payloads as they are (a replay of stored messages, the fault tests' malformed bytes)."""
        ...

    def read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Message]:
        """Up to `count` events for this consumer of `group`: first those delivered to it and never
        acknowledged (a restart), then new ones. Waits up to `block_ms` when there are none."""
        ...

    def ack(self, group: str, ids: Sequence[str]) -> None:
        """Acknowledge processed events: they are never delivered to the group again."""
        ...

    def lag(self, group: str) -> int:
        """Events published and not yet acknowledged by the group."""
        ...

    def close(self) -> None: ...


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def open_stream(settings: Settings, *, consumer: bool = False) -> EventStream:
    """The transport of the active profile: Redis under prod, the embedded SQLite file otherwise. A consumer's
    connection fails fast on a broken transport (it recovers from its checkpoint itself)."""
    if settings.profile == "prod":
        from platform_common.event_stream.redis_stream import RedisStream

        return RedisStream.from_settings(settings, consumer=consumer)
    from platform_common.event_stream.sqlite_stream import SqliteStream

    return SqliteStream(settings.stream_dir / "events.db")


# raw table -> (event kind, id column, extra columns carried); the order is the publishing order within a flush
RAW_EVENT_TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "impressions": ("impression", "impression_id", ("request_id", "surface", "position")),
    "clicks": ("click", "click_id", ("impression_id",)),
    "orders": ("order", "order_id", ("impression_id", "click_id", "quantity", "unit_price", "gmv")),
}
KIND_RANK = {kind: i for i, (kind, _, _) in enumerate(RAW_EVENT_TABLES.values())}


def raw_events(name: str, table: Any) -> list[dict[str, Any]]:
    """Stream events of landed raw rows (a pyarrow table of `name`'s contract, as landed: flaws included),
    ordered by (landed, id), as the producer publishes them and the backfill replays them. Timestamps become
    epoch microseconds; nulls stay null (the processor quarantines them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind, id_column, extra = RAW_EVENT_TABLES[name]
    columns = ["user_id", "product_id", *extra]
    cols: dict[str, list[Any]] = {c: table.column(c).to_pylist() for c in columns}
    ids = table.column(id_column).to_pylist()
    stamps = {
        c: pc.cast(pc.cast(table.column(src), pa.timestamp("us", tz="UTC")), pa.int64()).to_pylist()
        for c, src in (("event_ts", "event_ts"), ("ingested_at", "_ingested_at"))
    }
    events = [
        {"kind": kind, "event_id": ids[i], "event_ts": stamps["event_ts"][i], "ingested_at": stamps["ingested_at"][i]}
        | {c: cols[c][i] for c in columns}
        for i in range(table.num_rows)
    ]
    events.sort(
        key=lambda e: (e["ingested_at"] is None, e["ingested_at"] or 0, e["event_id"] is None, e["event_id"] or "")
    )
    return events
