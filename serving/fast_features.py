"""The fast online read path: an in-process snapshot of Feast's online store, behind Feast's own interfaces.

Why: `FeatureStore.get_online_features` spends most of its time in Python building and converting protobufs
(tens of milliseconds for one /rank request of 100 candidates over four feature views). The service needs the
same answers in well under a millisecond.

How, without leaving Feast:

* What to read comes from Feast's registry: the model's feature service names the views and features, the
  views name their join keys, value types and TTLs.
* The rows are read through Feast's provider (`OnlineStore.online_read`, the call `get_online_features` makes
  itself), with entity keys in Feast's own serialization, and every value is converted by Feast's own
  `feast_value_type_to_python_type`, so each value is exactly what `get_online_features` would return. Only
  listing which entity keys exist is store-specific (Feast has no scan API): for SQLite it is
  `SELECT DISTINCT entity_key` on the view's table, deserialized with Feast's `deserialize_entity_key`.
* The snapshot is replaced whole, atomically, when the registry shows a newer materialization (or a changed
  view) for any view it holds: a background thread polls the registry every `SHOPRANK_SNAPSHOT_POLL_SECONDS`
  (default 5 s). Between a materialization and the next poll the service serves the previous values: that is
  the only staleness this path adds, and it is bounded by the poll interval plus the reload time.
* The TTL rule is unchanged: at request time a row whose event timestamp (whole seconds, as Feast reports it)
  is older than its view's TTL is served as missing and counted, exactly like `OnlineFeatureReader`.

Faults: if the store or the registry cannot be read at start-up the reader is not built and the service
answers 503 with the reason while it retries. Once serving, a failed refresh or a failed health probe of the
store (missing, locked, corrupt file; registry unreachable) keeps the last good snapshot in service, documented
as the safe fallback, and the reason is reported in every answer (`degraded`) and in the metrics until the
store answers again; the TTL rule still applies, so a snapshot that outlives its TTL serves missing values, the
same as training would see.

Stores other than SQLite: the snapshot needs a way to list keys; without one `make_reader` falls back to
`DirectReader`, which calls `online_read` per request (still several times faster than `get_online_features`).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from platform_common.feature_spec import FeatureSpec
from serving.online_features import UNKNOWN_KEY, FeatureStoreUnavailable, FeatureVectors

log = logging.getLogger("shoprank.serving.features")

REQUIRED_VIEWS = ("user_features", "product_features")
PRODUCT_LOOKUPS = {"user_category_features": "product_category_l1", "merchant_features": "product_merchant_id"}
PROBE_TIMEOUT_SECONDS = 1.0
_NUMERIC_KINDS = {"INT32": "int", "INT64": "int", "FLOAT": "float", "DOUBLE": "float", "BOOL": "bool"}


def _poll_seconds() -> float:
    return float(os.environ.get("SHOPRANK_SNAPSHOT_POLL_SECONDS", "5"))


# --------------------------------------------------------------------------------------------------------------
# One feature view, fully in memory
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewTable:
    """Every row of one feature view. Row `n` (one past the last) is an all-missing sentinel: unknown and stale
    entities are pointed at it, so one fancy index serves present, absent and expired rows alike."""

    name: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    kinds: dict[str, str]  # feature -> "int" | "float" | "bool" | "str" (how Feast returns it)
    index: dict[Any, int]  # entity key (the value, or a tuple in join_keys order) -> row
    numeric: dict[str, np.ndarray]  # float64, NaN where missing; length n + 1
    null: dict[str, np.ndarray]  # bool, True where Feast returns None (numeric features only); length n + 1
    objects: dict[str, np.ndarray]  # object arrays (strings, None where missing); length n + 1
    ts: np.ndarray  # int64 event-timestamp seconds per row, 0 for the sentinel
    ttl_seconds: float | None
    _codes: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.ts) - 1

    def rows(self, keys: Iterable[Any], count: int) -> np.ndarray:
        get, n = self.index.get, self.n
        return np.fromiter((get(k, n) for k in keys), dtype=np.intp, count=count)

    def expire(self, idx: np.ndarray, now_s: float) -> int:
        """Point rows older than the TTL at the sentinel (in place); how many there were."""
        if self.ttl_seconds is None:
            return 0
        ts = self.ts[idx]
        stale = (ts > 0) & ((now_s - ts) > self.ttl_seconds)
        count = int(stale.sum())
        if count:
            idx[stale] = self.n
        return count

    def column(self, name: str, idx: np.ndarray) -> np.ndarray:
        return self.numeric[name][idx] if name in self.numeric else self.objects[name][idx]

    def codes(self, name: str, vocabulary: tuple[str, ...]) -> np.ndarray:
        """float32 vocabulary index of every row's value of a string feature (NaN: missing or unknown),
        cached per vocabulary: the same encoding as `FeatureSpec.encode`."""
        key = (name, vocabulary)
        table = self._codes.get(key)
        if table is None:
            lookup = {v: float(i) for i, v in enumerate(vocabulary)}
            values = self.objects[name]
            table = np.fromiter((lookup.get(v, np.nan) for v in values), dtype=np.float32, count=len(values))
            self._codes[key] = table
        return table

    def python_value(self, name: str, row: int) -> Any:
        """The value as Feast's `to_dict` returns it (for parity checks and logs)."""
        if name in self.objects:
            return self.objects[name][row]
        if self.null[name][row]:
            return None
        v = float(self.numeric[name][row])
        kind = self.kinds[name]
        return int(v) if kind == "int" else bool(v) if kind == "bool" else v


def _table_from_columns(
    name: str,
    join_keys: tuple[str, ...],
    features: Sequence[str],
    kinds: dict[str, str],
    keys: list[Any],
    stamps: list[int],
    values: list[list[Any]],
    ttl_seconds: float | None,
) -> ViewTable:
    """A ViewTable from per-entity keys, event seconds and Python values (None: missing); adds the sentinel."""
    n = len(keys)
    index = {k: i for i, k in enumerate(keys)}
    ts = np.zeros(n + 1, dtype=np.int64)
    ts[:n] = stamps
    numeric: dict[str, np.ndarray] = {}
    null: dict[str, np.ndarray] = {}
    objects: dict[str, np.ndarray] = {}
    for f, py in zip(features, values, strict=True):
        py = [*py, None]
        if kinds[f] == "str":
            arr = np.empty(n + 1, dtype=object)
            arr[:] = py
            objects[f] = arr
        else:
            null[f] = np.fromiter((v is None for v in py), dtype=bool, count=n + 1)
            numeric[f] = np.fromiter((np.nan if v is None else float(v) for v in py), dtype=np.float64, count=n + 1)
    return ViewTable(name, join_keys, tuple(features), kinds, index, numeric, null, objects, ts, ttl_seconds)


def _build_view_table(
    name: str,
    join_keys: tuple[str, ...],
    features: Sequence[str],
    kinds: dict[str, str],
    keys: list[Any],
    rows: list[tuple[Any, dict | None]],
    ttl_seconds: float | None,
) -> ViewTable:
    """From `online_read` results aligned with `keys` (absent entities are left out)."""
    present = [(k, ts, vals) for k, (ts, vals) in zip(keys, rows, strict=True) if vals is not None]
    stamps = [int(math.floor(t.timestamp())) if t is not None else 0 for _, t, _ in present]
    values = [[None if (p := vals.get(f)) is None else _python_value(p) for _, _, vals in present] for f in features]
    return _table_from_columns(
        name, join_keys, features, kinds, [k for k, _, _ in present], stamps, values, ttl_seconds
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Reading the store through Feast
# --------------------------------------------------------------------------------------------------------------


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
        missing = set(REQUIRED_VIEWS) - set(features)
        if missing:
            raise ValueError(f"feature service {feature_service} lacks views the service needs: {missing}")
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


def _sqlite_path(store: Any) -> Path | None:
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


def _sqlite_error(path: Path, exc: Exception) -> FeatureStoreUnavailable:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return FeatureStoreUnavailable(f"online store {path} is locked by another process: {text}")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return FeatureStoreUnavailable(f"online store {path} is corrupt: {text}")
    return FeatureStoreUnavailable(f"online store {path} cannot be read: {text}")


_SCALAR_ATTRS = frozenset({"int64_val", "int32_val", "double_val", "float_val", "string_val", "bool_val"})


def _python_value(proto: Any) -> Any:
    """Feast's `feast_value_type_to_python_type`, with its scalar case (getattr of the set field) inlined."""
    from feast.type_map import feast_value_type_to_python_type

    which = proto.WhichOneof("val")
    if which is None:
        return None
    if which in _SCALAR_ATTRS:
        return getattr(proto, which)
    return feast_value_type_to_python_type(proto)


def _event_seconds(raw: Any) -> int:
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
            named = dict(zip(ek.join_keys, (_python_value(v) for v in ek.entity_values), strict=True))
            keys.append(named[join_keys[0]] if len(join_keys) == 1 else tuple(named[k] for k in join_keys))
            stamps.append(0)
            for column in values:
                column.append(None)
        j = slot.get(feature_name)
        if j is not None:
            proto.ParseFromString(blob)  # clears first: one message object reused for every value
            which = proto.WhichOneof("val")
            if which is not None:
                values[j][-1] = getattr(proto, which) if which in _SCALAR_ATTRS else _python_value(proto)
        ts = seconds.get(event_ts)
        if ts is None:
            ts = seconds[event_ts] = _event_seconds(event_ts)
        stamps[-1] = ts
    return _table_from_columns(view, join_keys, features, kinds, keys, stamps, values, layout.ttl_seconds[view])


def load_snapshot(store: Any, layout: ServiceLayout, timeout: float = 5.0) -> dict[str, ViewTable]:
    """Every row of every view of the layout, from Feast's SQLite online store (one read transaction)."""
    path = _sqlite_path(store)
    if path is None:
        raise NotImplementedError("the snapshot reads Feast's SQLite online store; use the direct reader")
    try:
        with _open_sqlite_readonly(path, timeout) as con:
            con.execute("BEGIN")  # one consistent view of all tables, even if a materialization writes meanwhile
            return {view: scan_view(con, store, layout, view) for view in layout.features}
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from exc


def probe_store(store: Any, layout: ServiceLayout) -> None:
    """Raise FeatureStoreUnavailable unless every view's table can be read now (a one-row read)."""
    path = _sqlite_path(store)
    if path is None:
        return
    try:
        with _open_sqlite_readonly(path, PROBE_TIMEOUT_SECONDS) as con:
            for table in layout.tables.values():
                con.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchall()
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from exc


def _close(store: Any) -> None:
    """Close the SQLite connection Feast's online store caches (it would keep a deleted file alive)."""
    try:
        conn = getattr(store._get_provider().online_store, "_conn", None)  # noqa: SLF001
        if conn is not None:
            conn.close()
    except Exception:  # best effort
        pass


# --------------------------------------------------------------------------------------------------------------
# Per-request assembly (shared by the snapshot and the direct reader)
# --------------------------------------------------------------------------------------------------------------


class FastVectors(FeatureVectors):
    """FeatureVectors whose columns are numpy arrays and whose model matrix is gathered, not rebuilt."""

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        known_user: bool,
        known_products: list[bool],
        stale: dict[str, int],
        sources: dict[str, tuple[ViewTable, np.ndarray]],
    ) -> None:
        super().__init__(columns=columns, known_user=known_user, known_products=known_products, stale=stale)
        object.__setattr__(self, "_sources", sources)

    def model_matrix(self, spec: FeatureSpec, context: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        out = np.empty((n_rows, len(spec.columns)), dtype=np.float32)
        for j, name in enumerate(spec.numeric):
            if name in self.columns:
                out[:, j] = self.columns[name]
            else:  # request context: one value for every row
                out[:, j] = np.float32(context[name][0]) if n_rows else 0
        offset = len(spec.numeric)
        for j, name in enumerate(spec.categorical):
            source = self._sources.get(name)
            if source is not None:
                table, idx = source
                out[:, offset + j] = table.codes(name, spec.vocabularies[name])[idx]
            else:
                out[:, offset + j] = spec.encode(name, list(context[name]))
        return out


def assemble(
    tables: Mapping[str, ViewTable],
    layout: ServiceLayout,
    user_id: str,
    product_ids: Sequence[str],
    now_s: float,
) -> FastVectors:
    """The same columns, flags and stale counts as OnlineFeatureReader.fetch, from in-memory view tables."""
    n = len(product_ids)
    stale: dict[str, int] = {}
    sources: dict[str, tuple[ViewTable, np.ndarray]] = {}

    def take(view: str, idx: np.ndarray) -> np.ndarray:
        table = tables[view]
        expired = table.expire(idx, now_s)
        if expired:
            stale[view] = expired
        for f in table.features:
            sources[f] = (table, idx)
        return idx

    users = tables["user_features"]
    u_idx = take("user_features", np.full(n, users.index.get(user_id, users.n), dtype=np.intp))
    products = tables["product_features"]
    stored = products.rows(product_ids, n)
    # Routing keys stay as stored even when the product row expired (as OnlineFeatureReader does): training
    # joins merchant and category features by the label's own keys, whatever the age of the product row.
    merchants = [m or UNKNOWN_KEY for m in products.objects["product_merchant_id"][stored].tolist()]
    take("product_features", stored.copy())
    # The entity columns, as get_online_features echoes them: the request's ids and the looked-up keys.
    columns: dict[str, Any] = {
        "user_id": np.full(n, user_id, dtype=object),
        "product_id": np.array(product_ids, dtype=object),
    }
    if "user_category_features" in tables or "merchant_features" in tables:
        cats = [c or UNKNOWN_KEY for c in products.objects["product_category_l1"][stored].tolist()]
        columns["category_l1"] = np.array(cats, dtype=object)
        columns["merchant_id"] = np.array(merchants, dtype=object)
        if "user_category_features" in tables:
            uc = tables["user_category_features"]
            take("user_category_features", uc.rows(((user_id, c) for c in cats), n))
        if "merchant_features" in tables:
            take("merchant_features", tables["merchant_features"].rows(merchants, n))
    columns.update({f: table.column(f, idx) for f, (table, idx) in sources.items()})
    urow = int(u_idx[0]) if n else users.n
    known_user = any(users.python_value(f, urow) is not None for f in layout.features["user_features"])
    known_products = [m != UNKNOWN_KEY for m in merchants]
    return FastVectors(columns, known_user, known_products, stale, sources)


# --------------------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, ViewTable]
    layout: ServiceLayout
    loaded_at: datetime
    load_seconds: float

    @property
    def rows(self) -> int:
        return sum(t.n for t in self.tables.values())


class SnapshotReader:
    """Serves every read from an in-memory snapshot of the online store; keeps it current in the background."""

    mode = "snapshot"

    def __init__(
        self,
        store_factory: Callable[[], Any],
        feature_service: str,
        poll_seconds: float | None = None,
        on_refresh: Callable[[SnapshotReader], None] | None = None,
    ) -> None:
        self._store_factory = store_factory
        self.feature_service = feature_service
        self.poll_seconds = _poll_seconds() if poll_seconds is None else poll_seconds
        self.on_refresh = on_refresh
        self.degraded: str = ""  # why the store cannot be read right now ("" when it can)
        self.degraded_since: float | None = None
        self.refreshes = 0
        self.refresh_failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one reload at a time
        self._store: Any = None
        store = self._get_store()
        self.snapshot = self._load(store, ServiceLayout.from_registry(store, feature_service))
        self._thread = threading.Thread(target=self._watch, name="feature-snapshot", daemon=True)
        self._thread.start()

    # -- loading --------------------------------------------------------------------------------------------
    def _get_store(self) -> Any:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _load(self, store: Any, layout: ServiceLayout) -> Snapshot:
        started = time.perf_counter()
        tables = load_snapshot(store, layout)
        snap = Snapshot(tables, layout, datetime.now(UTC), time.perf_counter() - started)
        # Millions of long-lived objects: keep the cyclic garbage collector from walking them on every full
        # collection (pauses of tens of milliseconds under load). A replaced snapshot is still freed by
        # reference counting: it holds no cycles.
        gc.freeze()
        log.info("feature snapshot: %d rows of %d views in %.1fs", snap.rows, len(tables), snap.load_seconds)
        return snap

    def refresh(self, force: bool = False) -> bool:
        """Reload if the registry shows a newer materialization or a changed view (or `force`), else probe the
        store. True if a new snapshot was swapped in. Raises FeatureStoreUnavailable or the registry's error."""
        with self._lock:
            try:
                store = self._get_store()
                layout = ServiceLayout.from_registry(store, self.feature_service)
                changed = force or layout != self.snapshot.layout
                if changed:
                    self.snapshot = self._load(store, layout)  # one assignment: requests see old or new, whole
                    self.refreshes += 1
                else:
                    probe_store(store, layout)
            except Exception:
                self._store = None  # start from a fresh FeatureStore next time (registry may have moved)
                raise
        return changed

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last good snapshot; report why
                self.refresh_failures += 1
                reason = f"{type(exc).__name__}: {exc}"
                if reason != self.degraded:
                    log.warning("feature store unavailable, serving the snapshot of %s: %s", self.loaded_at, reason)
                self.degraded = reason
                self.degraded_since = self.degraded_since or time.time()
            else:
                if self.degraded:
                    log.info("feature store readable again")
                self.degraded, self.degraded_since = "", None
            if self.on_refresh is not None:
                try:
                    self.on_refresh(self)
                except Exception:  # metrics must never break the watcher
                    log.exception("snapshot refresh hook failed")

    def close(self) -> None:
        self._stop.set()

    # -- serving --------------------------------------------------------------------------------------------
    @property
    def loaded_at(self) -> datetime:
        return self.snapshot.loaded_at

    @property
    def layout(self) -> ServiceLayout:
        return self.snapshot.layout

    @property
    def features(self) -> dict[str, tuple[str, ...]]:
        return self.snapshot.layout.features

    def degraded_reason(self) -> str:
        if not self.degraded:
            return ""
        loaded = f"{self.loaded_at:%Y-%m-%dT%H:%M:%SZ}"
        return f"feature store unavailable ({self.degraded}); serving the snapshot loaded at {loaded}"

    def fetch(self, user_id: str, product_ids: Sequence[str], now: datetime | None = None) -> FastVectors:
        now_s = (now or datetime.now(UTC)).timestamp()
        snapshot = self.snapshot
        return assemble(snapshot.tables, snapshot.layout, user_id, product_ids, now_s)


class DirectReader:
    """Per request: Feast's provider `online_read` for the entities of the request only (any online store)."""

    mode = "direct"

    def __init__(self, store: Any, feature_service: str) -> None:
        self.store = store
        self.feature_service = feature_service
        self.layout = ServiceLayout.from_registry(store, feature_service)
        self._provider = store._get_provider()  # noqa: SLF001
        self._fvs = {v: store.get_feature_view(v, allow_registry_cache=True) for v in self.layout.features}
        probe_store(store, self.layout)
        self.degraded = ""

    @property
    def features(self) -> dict[str, tuple[str, ...]]:
        return self.layout.features

    def degraded_reason(self) -> str:
        return ""

    def close(self) -> None:
        _close(self.store)

    def _table(self, view: str, keys: list[Any]) -> ViewTable:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        join_keys = self.layout.join_keys[view]
        unique = list(dict.fromkeys(keys))
        protos = [
            EntityKey(
                join_keys=list(join_keys),
                entity_values=[Value(string_val=v) for v in ((k,) if len(join_keys) == 1 else k)],
            )
            for k in unique
        ]
        try:
            rows = self._provider.online_read(config=self.store.config, table=self._fvs[view], entity_keys=protos)
        except sqlite3.Error as exc:
            _close(self.store)  # the next request reconnects
            raise _sqlite_error(_sqlite_path(self.store) or Path("?"), exc) from exc
        return _build_view_table(
            view, join_keys, self.layout.features[view], self.layout.kinds[view], unique, rows,
            self.layout.ttl_seconds[view],
        )  # fmt: skip

    def fetch(self, user_id: str, product_ids: Sequence[str], now: datetime | None = None) -> FastVectors:
        now_s = (now or datetime.now(UTC)).timestamp()
        tables = {
            "user_features": self._table("user_features", [user_id]),
            "product_features": self._table("product_features", list(product_ids)),
        }
        products = tables["product_features"]
        stored = products.rows(product_ids, len(product_ids))  # routing keys as stored, whatever their age
        cats = [c or UNKNOWN_KEY for c in products.objects["product_category_l1"][stored].tolist()]
        merchants = [m or UNKNOWN_KEY for m in products.objects["product_merchant_id"][stored].tolist()]
        if "user_category_features" in self.layout.features:
            tables["user_category_features"] = self._table("user_category_features", [(user_id, c) for c in cats])
        if "merchant_features" in self.layout.features:
            tables["merchant_features"] = self._table("merchant_features", merchants)
        return assemble(tables, self.layout, user_id, product_ids, now_s)
