"""Prometheus metrics of the stream processor (issue 17, section 5), as a node-exporter textfile.

Why a textfile and not an HTTP /metrics: the processor is a batch loop with no server, it may run as several
consumers on one host, and serving's monitoring already publishes its freshness gauges the same way
(`freshness.prom`). `make stream` rewrites `$SHOPRANK_HOME/stream/metrics/stream-<consumer>.prom` atomically
(prometheus_client's `write_to_textfile`: temporary file, then rename) every `--metrics-seconds` (5 s) and at
exit; node-exporter's textfile collector (`--collector.textfile.directory`) exposes it.

Metrics (docs/streaming.md, "Metrics"):

- `shoprank_stream_consumer_lag_events{group}` (gauge): events published and not yet acknowledged by the group;
- `shoprank_stream_events_total{outcome}` (counter): events read, by outcome: `accepted`, `redelivered` (already
  in the checkpoint: acknowledged and skipped), or the quarantine's reason (`late`, `duplicate`, or why it is
  malformed: `null_user_id`, `not_json`, ...);
- `shoprank_stream_events_per_second` (gauge): events read per second over the last interval (`rate()` of the
  counter gives the same over any window);
- `shoprank_stream_rows_pushed_total{view}` (counter): rows pushed online (and logged) per stream view;
- `shoprank_stream_feature_freshness_seconds{view}` (gauge): age of the view's newest pushed row, now minus its
  visible time (grows while the view gets no events; NaN until the process pushed one);
- `shoprank_stream_event_to_visible_seconds{view}` (histogram): per pushed row, its visible time minus the event
  time it describes (processing delay, the landing zone's lag included);
- `shoprank_stream_last_batch_timestamp_seconds` (gauge): when the last non-empty batch became visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile

from platform_common.stream_log import VIEWS
from transforms.streaming.processor import BatchResult

# Event to visible: sub-second when the processor keeps up; minutes when the landing zone lags (5 s to 10 min).
DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


def metrics_path(stream_dir: Path, consumer: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in consumer)
    return stream_dir / "metrics" / f"stream-{safe}.prom"


class StreamMetrics:
    """The processor's metrics in a private registry, written to one textfile."""

    def __init__(self, path: Path, group: str, clock: Callable[[], float] = time.time) -> None:
        self.path, self.group, self.clock = path, group, clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = Gauge("shoprank_stream_consumer_lag_events", "Events not yet acknowledged", ["group"], registry=r)
        self.events = Counter("shoprank_stream_events", "Events read, by outcome", ["outcome"], registry=r)
        self.rate = Gauge("shoprank_stream_events_per_second", "Events read per second, last interval", registry=r)
        self.rows = Counter("shoprank_stream_rows_pushed", "Rows pushed online per stream view", ["view"], registry=r)
        self.freshness = Gauge(
            "shoprank_stream_feature_freshness_seconds", "Age of the view's newest pushed row", ["view"], registry=r
        )
        self.delay = Histogram(
            "shoprank_stream_event_to_visible_seconds",
            "Visible time minus the event time a pushed row describes",
            ["view"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.last_batch = Gauge(
            "shoprank_stream_last_batch_timestamp_seconds", "Visible time of the last non-empty batch", registry=r
        )
        self._newest: dict[str, float] = {}  # view -> visible time (epoch s) of its newest pushed row
        self._read_since = 0
        self._since = clock()
        for view in VIEWS:  # present from the first write, so an alert on absence is not needed
            self.rows.labels(view)
            self.freshness.labels(view).set(float("nan"))

    def observe(self, result: BatchResult) -> None:
        """One batch's counts (an empty batch changes nothing)."""
        if not result.read:
            return
        self._read_since += result.read
        self.events.labels("accepted").inc(result.accepted)
        if result.redelivered:  # already in the checkpoint (an acknowledgement lost in a crash): skipped
            self.events.labels("redelivered").inc(result.redelivered)
        for reason, count in result.quarantined.items():
            self.events.labels(reason).inc(count)
        if result.visible_at is None:
            return
        visible_s = result.visible_at / 1e6
        self.last_batch.set(visible_s)
        for view, count in result.rows.items():
            self.rows.labels(view).inc(count)
            self._newest[view] = visible_s
            for delay in result.delays.get(view, ()):
                self.delay.labels(view).observe(delay)

    def write(self, lag: int) -> None:
        """Refresh the gauges and rewrite the textfile (atomically)."""
        now = self.clock()
        elapsed = now - self._since
        if elapsed > 0:
            self.rate.set(self._read_since / elapsed)
        self._read_since, self._since = 0, now
        self.lag.labels(self.group).set(lag)
        for view, visible in self._newest.items():
            self.freshness.labels(view).set(max(now - visible, 0.0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(self.path), self.registry)
