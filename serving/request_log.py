"""Sampled request logging: the features and scores actually served, as parquet, for skew and drift analysis.

A sampled request (SHOPRANK_REQUEST_LOG_RATE, default 0.01; 0 turns it off) costs the request path one random
draw and one non-blocking queue put of references it already holds. A background thread turns the queue into
rows and writes them in batches (every SHOPRANK_REQUEST_LOG_FLUSH_SECONDS, default 10, or 20,000 rows) to

    $SHOPRANK_HOME/logs/requests/dt=YYYY-MM-DD/part-<unix ms>-<pid>-<seq>.parquet

One row per candidate: request id and time, user, surface, objective, boost, model name and version, the
request context the model saw (position, hour_of_day, is_campaign_day), the product, its rank and every score,
known flags, the views that were stale, and every online feature value served (after the TTL rule; missing is
null), under the feature's own name, so a row joins straight onto Feast's offline features for the same entity
and time. When the queue is full (the writer cannot keep up) samples are dropped and counted, never waited on.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.settings import get_serving_settings

log = logging.getLogger("shoprank.serving.request_log")

FLUSH_ROWS = 20_000
QUEUE_SIZE = 2_000


@dataclass(frozen=True)
class Sample:
    request_id: str
    served_at: datetime
    request: Any  # RankRequest
    response: Any  # RankResponse
    vectors: Any  # FeatureVectors
    scores: dict[str, np.ndarray]


class RequestLog:
    def __init__(
        self,
        directory: Path,
        rate: float | None = None,
        flush_seconds: float | None = None,
        on_rows: Any = None,
    ) -> None:
        self.directory = directory
        settings = get_serving_settings()
        self.rate = settings.request_log_rate if rate is None else rate
        self.flush_seconds = settings.request_log_flush_seconds if flush_seconds is None else flush_seconds
        self.on_rows = on_rows  # callback(result: str, n: int) for metrics
        self.written = 0
        self.dropped = 0
        self.files = 0
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._seq = 0
        self._thread: threading.Thread | None = None
        if self.rate > 0:
            self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def offer(self, request: Any, response: Any, trace: dict[str, Any]) -> bool:
        """On the request path: sample, and hand over references without waiting. True if queued."""
        if self.rate <= 0 or (self.rate < 1 and random.random() >= self.rate):
            return False
        sample = Sample(uuid.uuid4().hex, datetime.now(UTC), request, response, trace["vectors"], trace["scores"])
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            self.dropped += len(request.product_ids)
            if self.on_rows:
                self.on_rows("dropped", len(request.product_ids))
            return False
        return True

    # -- background -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        pending: list[Sample] = []
        rows = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                item = ...  # type: ignore[assignment]  # the sentinel of "nothing arrived in time"
            if item is None:  # close()
                self._flush(pending)
                return
            if item is not ...:
                pending.append(item)
                rows += len(item.request.product_ids)
            if rows >= FLUSH_ROWS or time.monotonic() >= deadline:
                self._flush(pending)
                pending, rows = [], 0
                deadline = time.monotonic() + self.flush_seconds

    def _flush(self, samples: list[Sample]) -> None:
        if not samples:
            return
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            tables = [
                pa.table({k: pa.array(v, from_pandas=True) for k, v in sample_columns(s).items()}) for s in samples
            ]
            table = pa.concat_tables(tables, promote_options="permissive")
            day = samples[0].served_at.strftime("%Y-%m-%d")
            folder = self.directory / f"dt={day}"
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._seq:05d}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(table, tmp)
            tmp.rename(folder / name)  # readers never see a half-written file
            self.written += table.num_rows
            self.files += 1
            if self.on_rows:
                self.on_rows("written", table.num_rows)
        except Exception:  # a logging failure must never take the service down
            n = sum(len(s.request.product_ids) for s in samples)
            self.dropped += n
            if self.on_rows:
                self.on_rows("dropped", n)
            log.exception("request log flush failed; %d rows dropped", n)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer (also run at interpreter exit)."""
        if self._thread is None or not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def _values(column: Any, n: int) -> np.ndarray | list:
    if isinstance(column, np.ndarray):
        if column.dtype == object:
            return [None if v is None else str(v) for v in column.tolist()]
        return column
    values = list(column)
    if any(isinstance(v, str) for v in values):
        return [None if v is None else str(v) for v in values]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def sample_columns(s: Sample) -> dict[str, Any]:
    """One sampled request as columns, one row per candidate, in request order."""
    ids = list(s.request.product_ids)
    n = len(ids)
    ranked = {p.product_id: p for p in s.response.ranking}
    ctx = s.response.context
    stale = ",".join(sorted(s.vectors.stale)) if s.vectors.stale else None
    cols: dict[str, Any] = {
        "request_id": [s.request_id] * n,
        "served_at": [s.served_at] * n,
        "user_id": [s.request.user_id] * n,
        "surface": [s.response.surface] * n,
        "objective": [s.response.objective] * n,
        "new_merchant_boost": np.full(n, float(s.request.new_merchant_boost)),
        "model_name": [s.response.model.name] * n,
        "model_version": [s.response.model.version] * n,
        "position": np.full(n, ctx.position, dtype=np.int64),
        "hour_of_day": np.full(n, ctx.hour_of_day, dtype=np.int64),
        "is_campaign_day": np.full(n, ctx.is_campaign_day, dtype=np.int64),
        "known_user": np.full(n, bool(s.response.known_user)),
        "stale_views": [stale] * n,
        "product_id": ids,
        "known_product": np.array([ranked[p].known_product for p in ids], dtype=bool),
        "new_merchant": np.array([ranked[p].new_merchant for p in ids], dtype=bool),
        "rank": np.array([ranked[p].rank for p in ids], dtype=np.int64),
        "score": np.array([ranked[p].score for p in ids], dtype=np.float64),
    }
    for key, values in s.scores.items():
        cols[key] = np.asarray(values, dtype=np.float64)
    for name, column in s.vectors.columns.items():
        if name not in cols:
            cols[name] = _values(column, n)
    return cols
