"""Reading Feast's online store for the snapshot and direct modes, through Feast's own interfaces.

What to read comes from Feast's registry: the model's feature service names the views and features, the views
name their join keys, value types and TTLs (`ServiceLayout`). Rows are read the way Feast's SQLite online store
reads them and decoded by Feast's serializers and value converter. Only listing which entity keys exist is
store-specific (Feast has no scan API): for SQLite it is a scan of the view's table.

Every failure to read the store or the registry becomes FeatureStoreUnavailable with the reason: missing,
locked or corrupt file, registry not applied.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.features.base import FeatureStoreUnavailable
from serving.features.routing import STREAM_VIEWS, check_views
from serving.features.table import SCALAR_ATTRS, ViewTable, python_value, table_from_columns

PROBE_TIMEOUT_SECONDS = 1.0
_NUMERIC_KINDS = {"INT32": "int", "INT64": "int", "FLOAT": "float", "DOUBLE": "float", "BOOL": "bool"}


@dataclass(frozen=True)
class ServiceLayout:
    """What one feature service reads: per view its features, join keys, value kinds and TTL (from the registry)."""

    feature_service: str
    features: dict[str, tuple[str, ...]]
    join_keys: dict[str, tuple[str, ...]]
    kinds: dict[str, dict[str, str]]
    ttl_seconds: dict[str, float | None]
    tables: dict[str, str]  # view -> its table in the online store (Feast's naming)
    version: tuple  # per view: definition time and last materialization end; a change means reload

    @classmethod
    def from_registry(cls, store: Any, feature_service: str) -> ServiceLayout:
        """One fresh read of the registry (refresh, then cached gets: one file read or one query)."""
        from feast.infra.online_stores.helpers import compute_table_id

        registry = store.config.registry
        if getattr(registry, "registry_type", "file") == "file":
            path = Path(registry.path)
            if not path.is_absolute() and store.config.repo_path:
                path = Path(store.config.repo_path) / path
            if not path.exists():  # Feast would read a missing file as an empty registry
                raise FeatureStoreUnavailable(f"Feast registry {path} is missing: run `make apply`")
        store.refresh_registry()
        service = store.get_feature_service(feature_service, allow_cache=True)
        features = {p.name_to_use(): tuple(f.name for f in p.features) for p in service.feature_view_projections}
        check_views(feature_service, features)
        join_keys, kinds, ttl, tables, version = {}, {}, {}, {}, []
        versioning = store.config.registry.enable_online_feature_view_versioning
        for name in features:
            fv = store.get_feature_view(name, allow_registry_cache=True)
            join_keys[name] = tuple(c.name for c in fv.entity_columns)
            types = {f.name: f.dtype.to_value_type().name for f in fv.features}
            kinds[name] = {f: _NUMERIC_KINDS.get(types[f], "str") for f in features[name]}
            ttl[name] = fv.ttl.total_seconds() if fv.ttl and fv.ttl.total_seconds() > 0 else None
            tables[name] = compute_table_id(store.project, fv, versioning)
            ends = [end for _, end in fv.materialization_intervals]
            version.append((name, fv.last_updated_timestamp, max(ends) if ends else None))
        return cls(feature_service, features, join_keys, kinds, ttl, tables, tuple(version))


def sqlite_path(store: Any) -> Path | None:
    online = store.config.online_store
    if getattr(online, "type", "") != "sqlite":
        return None
    path = Path(online.path)
    if not path.is_absolute() and store.config.repo_path:
        path = Path(store.config.repo_path) / path
    return path


@contextmanager
def _open_sqlite_readonly(path: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    """A read-only connection, closed after use, that never creates the file (sqlite3.connect would)."""
    if not path.exists():
        raise FeatureStoreUnavailable(f"online store {path} is missing: run `make apply materialize`")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, check_same_thread=False)
    try:
        yield con
    finally:
        con.close()


def sqlite_error(path: Path, exc: Exception) -> FeatureStoreUnavailable:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return FeatureStoreUnavailable(f"online store {path} is locked by another process: {text}")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return FeatureStoreUnavailable(f"online store {path} is corrupt: {text}")
    return FeatureStoreUnavailable(f"online store {path} cannot be read: {text}")


def event_seconds(raw: Any) -> int:
    """The event time Feast's SQLite store reports for a stored `event_ts`, in whole seconds.

    Mirrors the store exactly: its `timestamp` converter is `datetime.fromtimestamp(int(raw))` (a naive local
    time), `online_read` labels a naive time UTC, and the response keeps whole seconds."""
    return int(math.floor(datetime.fromtimestamp(int(raw)).replace(tzinfo=UTC).timestamp()))


def scan_view(con: sqlite3.Connection, store: Any, layout: ServiceLayout, view: str) -> ViewTable:
    """Every row of one view from Feast's SQLite online store, decoded the way its `online_read` decodes them.

    Same table (Feast's `compute_table_id`), same query as `SqliteOnlineStore.online_read` without the
    `entity_key IN (...)` filter, keys through Feast's `deserialize_entity_key`, values through Feast's
    ValueProto and value converter; the event time of an entity is that of its last row, as in online_read."""
    from feast.infra.key_encoding_utils import deserialize_entity_key
    from feast.protos.feast.types.Value_pb2 import Value

    features = layout.features[view]
    join_keys = layout.join_keys[view]
    kinds = layout.kinds[view]
    slot = {f: i for i, f in enumerate(features)}
    version = store.config.entity_key_serialization_version
    keys: list[Any] = []
    stamps: list[int] = []
    values: list[list[Any]] = [[] for _ in features]
    seconds: dict[Any, int] = {}
    current = None
    proto = Value()
    cursor = con.execute(
        f'SELECT entity_key, feature_name, value, event_ts FROM "{layout.tables[view]}" ORDER BY entity_key'
    )
    for entity_key, feature_name, blob, event_ts in cursor:
        if entity_key != current:
            current = entity_key
            ek = deserialize_entity_key(entity_key, version)
            named = dict(zip(ek.join_keys, (python_value(v) for v in ek.entity_values), strict=True))
            keys.append(named[join_keys[0]] if len(join_keys) == 1 else tuple(named[k] for k in join_keys))
            stamps.append(0)
            for column in values:
                column.append(None)
        j = slot.get(feature_name)
        if j is not None:
            proto.ParseFromString(blob)  # clears first: one message object reused for every value
            which = proto.WhichOneof("val")
            if which is not None:
                values[j][-1] = getattr(proto, which) if which in SCALAR_ATTRS else python_value(proto)
        ts = seconds.get(event_ts)
        if ts is None:
            ts = seconds[event_ts] = event_seconds(event_ts)
        stamps[-1] = ts
    return table_from_columns(view, join_keys, features, kinds, keys, stamps, values, layout.ttl_seconds[view])


def load_snapshot(store: Any, layout: ServiceLayout, timeout: float = 5.0) -> dict[str, ViewTable]:
    """Every row of every view of the layout, from Feast's SQLite online store (one read transaction)."""
    path = sqlite_path(store)
    if path is None:
        raise NotImplementedError("the snapshot reads Feast's SQLite online store; use the direct reader")
    try:
        with _open_sqlite_readonly(path, timeout) as con:
            con.execute("BEGIN")  # one consistent view of all tables, even if a materialization writes meanwhile
            # Not the stream views: pushed between materializations, they are read per request (snapshot.py).
            return {view: scan_view(con, store, layout, view) for view in layout.features if view not in STREAM_VIEWS}
    except sqlite3.Error as exc:
        raise sqlite_error(path, exc) from exc


def probe_store(store: Any, layout: ServiceLayout) -> None:
    """Raise FeatureStoreUnavailable unless every view's table can be read now (a one-row read)."""
    path = sqlite_path(store)
    if path is None:
        return
    try:
        with _open_sqlite_readonly(path, PROBE_TIMEOUT_SECONDS) as con:
            for table in layout.tables.values():
                con.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchall()
    except sqlite3.Error as exc:
        raise sqlite_error(path, exc) from exc


def close_store(store: Any) -> None:
    """Close the SQLite connection Feast's online store caches (it would keep a deleted file alive)."""
    try:
        conn = getattr(store._get_provider().online_store, "_conn", None)  # noqa: SLF001
        if conn is not None:
            conn.close()
    except Exception:  # best effort
        pass
