"""The snapshot read mode (SHOPRANK_FEATURE_READ=snapshot, the default): every online row in process memory.

Why: `FeatureStore.get_online_features` spends most of its time in Python building and converting protobufs
(tens of milliseconds for one /rank request of 100 candidates over four feature views). The service needs the
same answers in well under a millisecond.

How, without leaving Feast: the snapshot holds every row of the feature service's views, read from Feast's SQLite
online store through Feast's own serializers and value converter (serving.features.store), so each value is
exactly what `get_online_features` would return.

* The snapshot is replaced whole, atomically, when the registry shows a newer materialization (or a changed
  view) for any view it holds: a background thread polls the registry every `poll_seconds`
  (SHOPRANK_SNAPSHOT_POLL_SECONDS, default 5 s). Between a materialization and the next poll the service serves
  the previous values: that is the only staleness this mode adds, and it is bounded by the poll interval plus
  the reload time.
* The TTL rule is unchanged: at request time a row whose event timestamp (whole seconds, as Feast reports it)
  is older than its view's TTL is served as missing and counted, exactly like the feast reader.

Faults: if the store or the registry cannot be read at start-up the reader is not built and the service
answers 503 with the reason while it retries. Once serving, a failed refresh or a failed health probe of the
store (missing, locked, corrupt file; registry unreachable) keeps the last good snapshot in service, documented
as the safe fallback, and the reason is reported in every answer (`degraded`) and in the metrics until the
store answers again; the TTL rule still applies, so a snapshot that outlives its TTL serves missing values, the
same as training would see.

Stream views (issue 17, serving.features.routing.STREAM_VIEWS): the stream processor pushes their rows online
between materializations, which the registry does not record, so a snapshot of them would be as old as the last
materialization. They are not held: each request reads its user's and candidates' rows of them from the store
(the same query and decoding as Feast's SQLite `online_read`, keys serialized once: serving/features/sqlite_keyed.py),
so a pushed row is served on the next request. If that read
fails the request fails with the reason (503), like the direct mode: there is no last good copy of them.

Stores other than SQLite: the snapshot needs a way to list keys; without one `make_reader` falls back to the
direct reader.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from serving.features.base import DEFAULT_POLL_SECONDS
from serving.features.routing import STREAM_VIEWS
from serving.features.sqlite_keyed import SqliteKeyedReads
from serving.features.store import ServiceLayout, load_snapshot, probe_store, sqlite_path
from serving.features.table import FastVectors, ViewTable, assemble, route

log = logging.getLogger("shoprank.serving.features")


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, ViewTable]
    layout: ServiceLayout
    loaded_at: datetime
    load_seconds: float
    reads: SqliteKeyedReads | None = None  # per-request reads of the stream views, when the layout has any

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
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        on_refresh: Callable[[SnapshotReader], None] | None = None,
        requested_mode: str = "snapshot",
    ) -> None:
        # A zero, negative or NaN wait would spin the watcher; an infinite one is refused by threading's wait.
        if not (math.isfinite(poll_seconds) and poll_seconds > 0):
            raise ValueError(f"snapshot poll interval must be a positive number of seconds, got {poll_seconds!r}")
        self._store_factory = store_factory
        self.feature_service = feature_service
        self.requested_mode = requested_mode
        self.poll_seconds = poll_seconds
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
        path = sqlite_path(store)
        has_stream = any(v in layout.features for v in STREAM_VIEWS)
        reads = SqliteKeyedReads(path, store, layout) if has_stream and path is not None else None
        snap = Snapshot(tables, layout, datetime.now(UTC), time.perf_counter() - started, reads)
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
        snapshot = self.snapshot  # one read: the whole request sees one snapshot even if a reload swaps it
        tables = snapshot.tables
        if snapshot.reads is not None:
            tables = {**tables, **snapshot.reads.stream_tables(user_id, product_ids)}
        lookup, stored = route(tables["product_features"], user_id, product_ids)
        return assemble(tables, snapshot.layout.features, lookup, stored, now_s)
