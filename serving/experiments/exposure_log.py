"""The exposure log: every request served under an experiment, every slot of it, as parquet.

Not sampled: an experiment's analysis joins these rows with the clicks and orders that follow, and a missing
exposure would bias it. The request path hands over references it already holds (the served order and each
arm's score arrays) with one non-blocking queue put; a background thread turns them into rows and writes them
every SHOPRANK_REQUEST_LOG_FLUSH_SECONDS (or 20,000 rows), as serving/request_log.py does, to

    $SHOPRANK_HOME/logs/experiments/<experiment id>/dt=YYYY-MM-DD/part-<unix ms>-<pid>-<seq>.parquet

One row per served slot: request_id, served_at (UTC), experiment_id, design, user_id, surface, objective,
new_merchant_boost, arm (the request's arm; `interleaved` for interleaving), position (1 = first slot),
product_id, credit_arm (the arm that put the product in that slot: the request's arm under A/B, the team
that picked it under interleaving), arm_target (what that arm asked the registry for), model_name and
model_version (what actually scored it), fallback (why the champion served that arm instead, or null), score
(the objective's value, boost included), pctr, pcvr, pctcvr, expected_gmv, n_candidates, and latency_ms (the
request's time in the service up to its answer, for the analysis's latency guardrail).

The queue holds QUEUE_SIZE requests (minutes of traffic at a few hundred requests per second); if the writer
ever falls that far behind, a request is dropped rather than waited on, counted in
`shoprank_experiment_log_rows_total{result="dropped"}` and logged as an error: an analysis must check it is zero.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

log = logging.getLogger("shoprank.serving.experiments.exposure_log")

FLUSH_ROWS = 20_000
QUEUE_SIZE = 20_000
SCORE_COLUMNS = ("pctr", "pcvr", "pctcvr", "expected_gmv")


@dataclass(frozen=True)
class ArmServed:
    """How one arm scored this request: the model that did it and its scores, in request (candidate) order."""

    target: str
    model_name: str
    model_version: str
    fallback: str | None
    scores: Mapping[str, np.ndarray]  # pctr, pcvr, pctcvr, expected_gmv
    score: np.ndarray  # the objective, boost included


@dataclass(frozen=True)
class Exposure:
    request_id: str
    served_at: datetime
    experiment_id: str
    design: str
    user_id: str
    surface: str
    objective: str
    new_merchant_boost: float
    arm: str
    product_ids: Sequence[str]  # request order
    order: Sequence[int]  # candidate indices, in served order
    credit: Sequence[str]  # per served slot, the arm that contributed it
    arms: Mapping[str, ArmServed]
    latency_ms: float = float("nan")  # in the service, from the request's arrival to its answer (the guardrail)


def exposure_columns(e: Exposure) -> dict[str, object]:
    """One request as columns, one row per served slot, in served order."""
    n = len(e.order)
    order = np.asarray(e.order, dtype=np.int64)
    credit = list(e.credit)
    cols: dict[str, object] = {
        "request_id": [e.request_id] * n,
        "served_at": [e.served_at] * n,
        "experiment_id": [e.experiment_id] * n,
        "design": [e.design] * n,
        "user_id": [e.user_id] * n,
        "surface": [e.surface] * n,
        "objective": [e.objective] * n,
        "new_merchant_boost": np.full(n, float(e.new_merchant_boost)),
        "arm": [e.arm] * n,
        "position": np.arange(1, n + 1, dtype=np.int64),
        "product_id": [e.product_ids[i] for i in order.tolist()],
        "credit_arm": credit,
        "arm_target": [e.arms[a].target for a in credit],
        "model_name": [e.arms[a].model_name for a in credit],
        "model_version": [e.arms[a].model_version for a in credit],
        "fallback": [e.arms[a].fallback for a in credit],
        "n_candidates": np.full(n, len(e.product_ids), dtype=np.int64),
        "latency_ms": np.full(n, float(e.latency_ms)),
    }
    # Each slot's scores come from the arm credited with it: pick per arm, then interleave by slot.
    slot_arm = np.array(credit, dtype=object)
    for name in ("score", *SCORE_COLUMNS):
        values = np.empty(n, dtype=np.float64)
        for arm, served in e.arms.items():
            mask = slot_arm == arm
            if mask.any():
                source = served.score if name == "score" else served.scores[name]
                values[mask] = np.asarray(source, dtype=np.float64)[order[mask]]
        cols[name] = values
    return cols


class ExposureLog:
    def __init__(
        self, directory: Path, flush_seconds: float, on_rows: Callable[[str, int], None] | None = None
    ) -> None:
        self.directory = directory
        self.flush_seconds = flush_seconds
        self.on_rows = on_rows  # callback(result, n) for metrics
        self.written = 0
        self.dropped = 0
        self._queue: queue.Queue[Exposure | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def offer(self, exposure: Exposure) -> bool:
        """On the request path: hand the exposure over without waiting. False if the queue is full."""
        try:
            self._queue.put_nowait(exposure)
        except queue.Full:
            self._count("dropped", len(exposure.order))
            log.error("exposure log queue full: request %s of %s dropped", exposure.request_id, exposure.experiment_id)
            return False
        return True

    def _count(self, result: str, n: int) -> None:
        if result == "written":
            self.written += n
        else:
            self.dropped += n
        if self.on_rows:
            self.on_rows(result, n)

    # -- background -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        pending: list[Exposure] = []
        rows = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                item = ...  # type: ignore[assignment]  # "nothing arrived in time"
            if item is None:  # close()
                self._flush(pending)
                return
            if item is not ...:
                pending.append(item)
                rows += len(item.order)
            if rows >= FLUSH_ROWS or time.monotonic() >= deadline:
                self._flush(pending)
                pending, rows = [], 0
                deadline = time.monotonic() + self.flush_seconds

    def _flush(self, exposures: list[Exposure]) -> None:
        groups: dict[tuple[str, str], list[Exposure]] = defaultdict(list)
        for e in exposures:
            groups[(e.experiment_id, e.served_at.strftime("%Y-%m-%d"))].append(e)
        for (experiment_id, day), group in groups.items():
            try:
                self._write(experiment_id, day, group)
            except Exception:  # a logging failure must never take the service down; it is counted and logged
                n = sum(len(e.order) for e in group)
                self._count("dropped", n)
                log.exception("exposure log flush failed; %d rows of %s dropped", n, experiment_id)

    def _write(self, experiment_id: str, day: str, group: list[Exposure]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [exposure_columns(e) for e in group]
        columns = {key: _concat([p[key] for p in parts]) for key in parts[0]}
        table = pa.table({k: pa.array(v, from_pandas=True) for k, v in columns.items()})
        folder = self.directory / experiment_id / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._seq:05d}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        tmp.rename(folder / name)  # readers never see a half-written file
        self._count("written", table.num_rows)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer (also run at interpreter exit)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def _concat(values: list[object]) -> object:
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values)  # type: ignore[arg-type]
    return [v for part in values for v in part]  # type: ignore[attr-defined]


class ExperimentMetrics:
    """`shoprank_experiment_requests_total{experiment,arm}` (a live view of the split) and
    `shoprank_experiment_log_rows_total{result}` (exposure rows `written` or `dropped`).

    Created in the worker, once per process: BentoML sets prometheus_client's multiprocess folder before the
    service is built, and prometheus_client refuses a name twice (serving/observability.py does the same)."""

    def __init__(self) -> None:
        from prometheus_client import Counter

        self.requests = Counter(
            "shoprank_experiment_requests", "/rank answers under an experiment", ["experiment", "arm"]
        )
        self.rows = Counter("shoprank_experiment_log_rows", "Exposure log rows", ["result"])

    def rows_hook(self, result: str, n: int) -> None:
        self.rows.labels(result).inc(n)


_metrics: ExperimentMetrics | None = None
_metrics_lock = threading.Lock()


def experiment_metrics() -> ExperimentMetrics:
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = ExperimentMetrics()
        return _metrics
