"""Prometheus metrics of the ranking service, exposed on BentoML's own `/metrics` beside its request metrics.

- `shoprank_rank_seconds{outcome}` (histogram): /rank handler time by outcome: ok, not_ready, store_unavailable
- `shoprank_feature_read_seconds` (histogram): the online feature read of one request
- `shoprank_scoring_seconds` (histogram): model matrix and the XGBoost heads of one request
- `shoprank_candidates` (histogram): candidates per request
- `shoprank_missing_feature_rows_total{view}`: candidate rows served without a view's features (unknown or expired)
- `shoprank_stale_feature_rows_total{view}`: of those, rows present but older than the view's TTL
- `shoprank_unknown_total{kind}`: unknown users (per request) and products (per candidate)
- `shoprank_rank_requests_total{outcome}`: /rank answers by outcome
- `shoprank_model_info{name,version}` (gauge): 1 for the model version being served
- `shoprank_feature_snapshot_age_seconds`, `shoprank_feature_snapshot_rows` (gauges): the in-process snapshot
- `shoprank_feature_store_up` (gauge): 1 if the online store answered the last probe, 0 while serving from the
  last good snapshot
- `shoprank_request_log_rows_total{result}`: sampled request-log rows `written` or `dropped`
- `shoprank_shed_requests_total{reason}`: /rank requests answered 503 by admission control (serving/guard.py):
  `in_flight` (SHOPRANK_MAX_IN_FLIGHT reached) or `deadline` (waited past SHOPRANK_QUEUE_DEADLINE_SECONDS)

BentoML runs workers as separate processes and aggregates with prometheus_client's multiprocess mode; it
sets PROMETHEUS_MULTIPROC_DIR before the service is built, which is why the metrics are created lazily here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from serving.settings import ServingSettings

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CANDIDATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 300, 500)

_lock = threading.Lock()
_instance: Telemetry | None = None


def http_tuning(settings: ServingSettings) -> dict[str, Any]:
    """BentoML service options that decide what each request costs besides the ranking itself.

    Measured on 2 cores (docs/benchmarks.md, "Serving"): BentoML's per-request access-log line and its
    OpenTelemetry span (created even with no exporter configured) cost about as much CPU as the whole ranking
    of 100 candidates. Both are off for /rank by default; the Prometheus metrics here and the sampled request
    log (serving/request_log.py) cover what they told. SHOPRANK_ACCESS_LOG=1 turns the access log back on,
    SHOPRANK_TRACE_RANK=1 the /rank spans (for a configured tracing exporter).
    """
    options: dict[str, Any] = {"logging": {"access": {"enabled": settings.access_log}}}
    if not settings.trace_rank:
        options["tracing"] = {"excluded_urls": ["/rank"]}
    return options


def get_telemetry() -> Telemetry:
    """One set of metric objects per process (prometheus_client refuses duplicate names)."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = Telemetry()
        return _instance


class Telemetry:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.rank_seconds = Histogram(
            "shoprank_rank_seconds", "/rank handler time by outcome", ["outcome"], buckets=LATENCY_BUCKETS
        )
        self.read_seconds = Histogram(
            "shoprank_feature_read_seconds", "Online feature read of one request", buckets=LATENCY_BUCKETS
        )
        self.score_seconds = Histogram(
            "shoprank_scoring_seconds", "Model matrix and XGBoost heads of one request", buckets=LATENCY_BUCKETS
        )
        self.candidates = Histogram("shoprank_candidates", "Candidates per /rank request", buckets=CANDIDATE_BUCKETS)
        self.missing = Counter(
            "shoprank_missing_feature_rows", "Candidate rows served without a view's features", ["view"]
        )
        self.stale = Counter(
            "shoprank_stale_feature_rows", "Candidate rows older than the view's TTL, served as missing", ["view"]
        )
        self.unknown = Counter("shoprank_unknown", "Unknown users (per request) and products (per candidate)", ["kind"])
        self.requests = Counter("shoprank_rank_requests", "/rank answers by outcome", ["outcome"])
        self.model_info = Gauge(
            "shoprank_model_info", "1 for the model version served", ["name", "version"], multiprocess_mode="livemax"
        )
        self.snapshot_age = Gauge(
            "shoprank_feature_snapshot_age_seconds", "Age of the online-store snapshot", multiprocess_mode="livemax"
        )
        self.snapshot_rows = Gauge(
            "shoprank_feature_snapshot_rows", "Rows in the online-store snapshot", multiprocess_mode="livemax"
        )
        self.store_up = Gauge(
            "shoprank_feature_store_up", "1 if the online store answered the last probe", multiprocess_mode="livemin"
        )
        self.log_rows = Counter("shoprank_request_log_rows", "Sampled request-log rows", ["result"])
        self.shed_requests = Counter("shoprank_shed_requests", "/rank requests shed with 503 by reason", ["reason"])
        self._ok = self.rank_seconds.labels("ok")
        self._ok_count = self.requests.labels("ok")
        self._model: tuple[str, str] | None = None
        self._next_state = 0.0
        self._views: dict[str, tuple[Any, Any]] = {}

    def _view(self, view: str) -> tuple[Any, Any]:
        pair = self._views.get(view)
        if pair is None:
            pair = self._views[view] = (self.missing.labels(view), self.stale.labels(view))
        return pair

    def served(self, model: Any, reader: Any, trace: dict[str, Any], seconds: float) -> None:
        """Record one answered request; `trace` as filled by serving.ranking.rank."""
        self._ok.observe(seconds)
        self._ok_count.inc()
        now = time.monotonic()
        if now >= self._next_state:  # reader gauges at most once a second
            self._next_state = now + 1.0
            self.reader_state(reader)
        if (model.name, model.version) != self._model:
            if self._model is not None:
                self.model_info.labels(*self._model).set(0)
            self._model = (model.name, model.version)
            self.model_info.labels(*self._model).set(1)
        self.read_seconds.observe(trace.get("read_seconds", 0.0))
        self.score_seconds.observe(trace.get("score_seconds", 0.0))
        vectors = trace.get("vectors")
        if vectors is None:
            return
        n = len(vectors.known_products)
        self.candidates.observe(n)
        for view, count in missing_rows(vectors).items():
            if count:
                self._view(view)[0].inc(count)
        for view, count in vectors.stale.items():
            self._view(view)[1].inc(count)
        if not vectors.known_user:
            self.unknown.labels("user").inc()
        unknown_products = n - sum(vectors.known_products)
        if unknown_products:
            self.unknown.labels("product").inc(unknown_products)

    def log_rows_hook(self, result: str, n: int) -> None:
        self.log_rows.labels(result).inc(n)

    def shed(self, reason: str) -> None:
        self.shed_requests.labels(reason).inc()

    def failed(self, outcome: str, seconds: float) -> None:
        self.rank_seconds.labels(outcome).observe(seconds)
        self.requests.labels(outcome).inc()

    def reader_state(self, reader: Any) -> None:
        """Snapshot age and store health, from the reader (called by its refresh thread and on scrape)."""
        snapshot = getattr(reader, "snapshot", None)
        if snapshot is not None:
            self.snapshot_age.set(time.time() - snapshot.loaded_at.timestamp())
            self.snapshot_rows.set(snapshot.rows)
        self.store_up.set(0 if getattr(reader, "degraded", "") else 1)


def count_shed(reason: str) -> None:
    """For the admission middleware, which is built before the telemetry of its worker."""
    get_telemetry().shed(reason)


def reader_state_hook(reader: Any) -> None:
    """For the snapshot reader's refresh thread: store health and snapshot age, also when no request comes."""
    get_telemetry().reader_state(reader)


def missing_rows(vectors: Any) -> dict[str, int]:
    """Per view, candidate rows served with none of the view's features."""
    sources = getattr(vectors, "_sources", None)
    out: dict[str, int] = {}
    if sources is not None:  # the fast path knows which rows pointed at the all-missing sentinel
        seen: set[str] = set()
        for table, idx in sources.values():
            if table.name not in seen:
                seen.add(table.name)
                out[table.name] = int(np.count_nonzero(idx == table.n))
        return out
    return out
