"""The stream processor's Prometheus textfile (issue 17, section 5): lag, events by outcome, freshness, delays.

Events go through the embedded stream into a real Processor (no Feast: the pusher is off) with a scripted
clock; the textfile is parsed back with prometheus_client's own parser.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.stream_log import PRODUCT_VIEW, USER_VIEW
from transforms.streaming.metrics import StreamMetrics, metrics_path
from transforms.streaming.processor import GROUP, Processor

S = 1_000_000
T0 = 1_794_300_000 * S


def event(kind: str, eid: str, ts_us: int, user: str = "u1", product: str = "p1") -> dict:
    e = {"kind": kind, "event_id": eid, "user_id": user, "product_id": product, "event_ts": ts_us,
         "ingested_at": ts_us + S}  # fmt: skip
    if kind == "impression":
        e |= {"surface": "home_feed", "position": 1, "request_id": "r1"}
    else:
        e |= {"impression_id": "i1"}
    return e


def samples(path) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_textfile_counts_lag_outcomes_freshness_and_delays(tmp_path):
    stream = SqliteStream(tmp_path / "events.db")
    clock = {"us": T0 + 3 * S}
    proc = Processor(stream, None, tmp_path / "stream", tmp_path / "log", clock=lambda: clock["us"])
    wall = {"s": (T0 + 3 * S) / S}
    metrics = StreamMetrics(metrics_path(tmp_path / "stream", "host/1"), GROUP, clock=lambda: wall["s"])
    assert metrics.path.name == "stream-host_1.prom"

    stream.publish([event("impression", "i1", T0), event("click", "c1", T0 + S)])
    stream.publish([event("click", "c1", T0 + S)])  # redelivered: a duplicate
    stream.publish([{"kind": "click", "event_id": "bad"}])  # malformed: no user, no time
    metrics.write(stream.lag(GROUP))
    got = samples(metrics.path)
    assert got[("shoprank_stream_consumer_lag_events", (("group", GROUP),))] == 4

    result = proc.step()
    metrics.observe(result)
    wall["s"] += 2.0  # the textfile is written 2 s after the batch became visible
    metrics.write(stream.lag(GROUP))
    got = samples(metrics.path)
    assert got[("shoprank_stream_consumer_lag_events", (("group", GROUP),))] == 0
    assert got[("shoprank_stream_events_total", (("outcome", "accepted"),))] == 2
    assert got[("shoprank_stream_events_total", (("outcome", "duplicate"),))] == 1
    outcomes = {k[1][0][1]: v for k, v in got.items() if k[0] == "shoprank_stream_events_total"}
    # the malformed event under its reason (the quarantine's), e.g. null_user_id; all four read are counted once
    assert len(outcomes) == 3 and sum(outcomes.values()) == 4, outcomes
    assert got[("shoprank_stream_events_per_second", ())] == 4 / 2.0
    for view in (USER_VIEW, PRODUCT_VIEW):
        assert got[("shoprank_stream_rows_pushed_total", (("view", view),))] == 1
        assert got[("shoprank_stream_feature_freshness_seconds", (("view", view),))] == 2.0
        # one row per view, describing the click at T0 + 1 s, visible at T0 + 3 s: 2 s, in the (1, 2] bucket
        assert got[("shoprank_stream_event_to_visible_seconds_count", (("view", view),))] == 1
        assert got[("shoprank_stream_event_to_visible_seconds_sum", (("view", view),))] == 2.0
        assert got[("shoprank_stream_event_to_visible_seconds_bucket", (("le", "1.0"), ("view", view)))] == 0
        assert got[("shoprank_stream_event_to_visible_seconds_bucket", (("le", "2.0"), ("view", view)))] == 1
    assert got[("shoprank_stream_last_batch_timestamp_seconds", ())] == (T0 + 3 * S) / S

    # an idle interval: nothing read, the rows age
    metrics.observe(proc.step())
    wall["s"] += 10.0
    metrics.write(stream.lag(GROUP))
    got = samples(metrics.path)
    assert got[("shoprank_stream_events_per_second", ())] == 0
    assert got[("shoprank_stream_feature_freshness_seconds", (("view", USER_VIEW),))] == 12.0
    assert all(isinstance(v, float) for v in got.values())
