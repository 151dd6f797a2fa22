"""Per-request reads of the stream views straight from Feast's SQLite online store (the snapshot mode).

The stream views change between materializations, so the snapshot cannot hold them: they are read per request,
for the request's user and its candidates. Through Feast's provider `online_read` that cost about 2.4 ms of
server CPU per /rank of 100 candidates (docs/benchmarks.md, "With the stream champion"), most of it building
an EntityKey proto and serializing it for every candidate of every request, then a dict and a datetime per row.
Here each entity's key is serialized once (Feast's own `serialize_entity_key`, cached) and the rows are decoded
the way `scan_view` decodes the snapshot's: the same query as `SqliteOnlineStore.online_read` (same table, same
`entity_key IN (...)`), the same ValueProto and value converter, an entity's event time from its last row.
tests/serving/test_stream_serving.py holds every read mode to Feast's `get_online_features` on pushed rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.features.routing import STREAM_VIEWS
from serving.features.store import ServiceLayout, event_seconds, sqlite_error
from serving.features.table import SCALAR_ATTRS, ViewTable, python_value, table_from_columns

MAX_CACHED_KEYS = 2_000_000  # serialized keys kept per view (a few tens of bytes each); cleared when exceeded
TIMEOUT_SECONDS = 5.0  # what sqlite3 (and so Feast's own connection) waits for a writer's lock


class SqliteKeyedReads:
    """The stream views of a layout, read per request from Feast's SQLite online store file."""

    def __init__(self, path: Path, store: Any, layout: ServiceLayout) -> None:
        self.path = path
        self.layout = layout
        self.version = store.config.entity_key_serialization_version
        self.views = tuple(v for v in STREAM_VIEWS if v in layout.features)
        for view in self.views:
            if len(layout.join_keys[view]) != 1:
                raise ValueError(f"{view}: a stream view is keyed by one entity, got {layout.join_keys[view]}")
        self._keys: dict[str, dict[str, bytes]] = {v: {} for v in self.views}
        self._event_seconds: dict[Any, int] = {}
        self._local = threading.local()  # one read-only connection per serving thread

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            uri = f"file:{self.path}?mode=ro"
            con = self._local.con = sqlite3.connect(uri, uri=True, timeout=TIMEOUT_SECONDS, check_same_thread=False)
        return con

    def _serialized(self, view: str, ids: Sequence[str]) -> list[bytes]:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        cache = self._keys[view]
        if len(cache) > MAX_CACHED_KEYS:
            cache.clear()
        join_key = self.layout.join_keys[view][0]
        out = []
        for entity_id in ids:
            key = cache.get(entity_id)
            if key is None:
                proto = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=entity_id)])
                key = cache[entity_id] = serialize_entity_key(proto, entity_key_serialization_version=self.version)
            out.append(key)
        return out

    def table(self, view: str, ids: Sequence[str]) -> ViewTable:
        from feast.protos.feast.types.Value_pb2 import Value

        unique = list(dict.fromkeys(ids))
        keys = self._serialized(view, unique)
        entity_of = dict(zip(keys, unique, strict=True))
        features = self.layout.features[view]
        slot = {f: i for i, f in enumerate(features)}
        try:
            rows = (
                self._connection()
                .execute(
                    f'SELECT entity_key, feature_name, value, event_ts FROM "{self.layout.tables[view]}" '
                    f"WHERE entity_key IN ({','.join('?' * len(keys))}) ORDER BY entity_key",
                    keys,
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            self._local.con = None  # the next request reconnects
            raise sqlite_error(self.path, exc) from exc
        found: dict[str, tuple[Any, list[Any]]] = {}  # entity -> (its last row's stored event_ts, values)
        proto = Value()
        for entity_key, feature_name, blob, event_ts in rows:
            entity = entity_of[entity_key]
            stamp_values = found.get(entity)
            values = stamp_values[1] if stamp_values is not None else [None] * len(features)
            j = slot.get(feature_name)
            if j is not None:
                proto.ParseFromString(blob)  # clears first: one message object reused for every value
                which = proto.WhichOneof("val")
                if which is not None:
                    values[j] = getattr(proto, which) if which in SCALAR_ATTRS else python_value(proto)
            found[entity] = (event_ts, values)  # an entity's time is that of its last row
        present = [e for e in unique if e in found]  # the request's order, absent entities left out
        columns = [[found[e][1][j] for e in present] for j in range(len(features))]
        return table_from_columns(
            view, self.layout.join_keys[view], features, self.layout.kinds[view], present,
            [self._seconds(found[e][0]) for e in present], columns, self.layout.ttl_seconds[view],
        )  # fmt: skip

    def _seconds(self, raw: Any) -> int:
        """`event_seconds` of a stored `event_ts`, remembered: a push stamps all its rows with one time."""
        seconds = self._event_seconds.get(raw)
        if seconds is None:
            if len(self._event_seconds) > MAX_CACHED_KEYS:
                self._event_seconds.clear()
            seconds = self._event_seconds[raw] = event_seconds(raw)
        return seconds

    def stream_tables(self, user_id: str, product_ids: Sequence[str]) -> dict[str, ViewTable]:
        """The request's rows of the stream views the layout has (keyed by the user or the candidates)."""
        ids = {"user_id": [user_id], "product_id": list(product_ids)}
        return {v: self.table(v, ids[self.layout.join_keys[v][0]]) for v in self.views}
