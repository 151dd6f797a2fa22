"""The stream features' definitions and the late/duplicate rule, against a brute-force reference.

The reference recomputes every feature from scratch from the accepted events (the rule applied naively to the
whole arrival sequence), so it shares no code with the incremental engine (transforms/streaming/windows.py).
"""

from __future__ import annotations

import json
import random

import pytest

from transforms.streaming.events import Event, Malformed, parse
from transforms.streaming.windows import LATENESS_US, MINUTE_US, SECOND_US, Engine

T0 = 1_794_000_000 * SECOND_US  # 2026-11-07 UTC


def reference(events: list[Event]) -> tuple[list[str], list[dict[str, dict]]]:
    """Verdicts, and after each event every user's and product's features, from first principles."""
    verdicts, snapshots = [], []
    accepted: list[Event] = []
    for e in events:
        watermark = max((a.event_ts for a in accepted), default=None)
        if watermark is not None and e.event_ts < watermark - LATENESS_US:
            verdicts.append("late")
        elif any(a.event_id == e.event_id for a in accepted):
            verdicts.append("duplicate")
        else:
            verdicts.append("accepted")
            accepted.append(e)
        snap: dict[str, dict] = {}
        for user in {a.user_id for a in accepted if a.kind != "order"}:
            mine = [a for a in accepted if a.user_id == user and a.kind != "order"]
            t = max(a.event_ts for a in mine)
            clicks = [a.event_ts for a in mine if a.kind == "click"]
            imps = [a.event_ts for a in mine if a.kind == "impression"]
            times = sorted(mine, key=lambda a: a.event_ts, reverse=True)
            session, previous = [], t
            for a in times:
                if a.event_ts <= t - 240 * MINUTE_US or previous - a.event_ts > 30 * MINUTE_US:
                    break
                session.append(a)
                previous = a.event_ts
            snap["u:" + user] = {
                "us_clicks_5m": sum(t - 5 * MINUTE_US < c <= t for c in clicks),
                "us_clicks_30m": sum(t - 30 * MINUTE_US < c <= t for c in clicks),
                "us_impressions_30m": sum(t - 30 * MINUTE_US < c <= t for c in imps),
                "us_session_impressions": sum(a.kind == "impression" for a in session),
                "us_session_clicks": sum(a.kind == "click" for a in session),
                "us_seconds_since_click": (t - max(clicks)) / SECOND_US if clicks else None,
                "event_time": t,
                "last_event_id": max((a.event_ts, a.event_id) for a in mine)[1],
            }
        for product in {a.product_id for a in accepted if a.kind != "order"}:
            mine = [a for a in accepted if a.product_id == product and a.kind != "order"]
            t = max(a.event_ts for a in mine)
            snap["p:" + product] = {
                "ps_clicks_1h": sum(t - 60 * MINUTE_US < a.event_ts <= t for a in mine if a.kind == "click"),
                "ps_impressions_1h": sum(t - 60 * MINUTE_US < a.event_ts <= t for a in mine if a.kind == "impression"),
                "event_time": t,
                "last_event_id": max((a.event_ts, a.event_id) for a in mine)[1],
            }
        snapshots.append(snap)
    return verdicts, snapshots


def engine_snapshot(engine: Engine) -> dict[str, dict]:
    snap = {}
    for u in engine.users:
        row = engine.user_row(u)
        snap["u:" + row.pop("user_id")] = row
    for p in engine.products:
        row = engine.product_row(p)
        snap["p:" + row.pop("product_id")] = row
    return snap


def random_events(seed: int, n: int = 400) -> list[Event]:
    """Bursts, gaps longer than a session, events up to 2 min out of order, re-sent ids."""
    rng = random.Random(seed)
    clock = T0
    out: list[Event] = []
    for i in range(n):
        clock += rng.choice(
            [SECOND_US, 20 * SECOND_US, 3 * MINUTE_US, 12 * MINUTE_US, 31 * MINUTE_US, 2 * 3600 * SECOND_US]
        )
        if out and rng.random() < 0.08:
            out.append(rng.choice(out if rng.random() < 0.5 else out[-3:]))  # a redelivery or a re-landing
            continue
        ts = clock - rng.choice([0, 0, 0, 30 * SECOND_US, LATENESS_US - SECOND_US, LATENESS_US + 1, 2 * LATENESS_US])
        kind = rng.choice(["impression", "impression", "click", "order"])
        out.append(Event(kind, f"e{i:05d}", f"u{rng.randint(1, 4)}", f"p{rng.randint(1, 5)}", ts, clock))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_engine_matches_the_reference_after_every_event(seed):
    events = random_events(seed)
    verdicts, snapshots = reference(events)
    engine = Engine()
    for event, verdict, expected in zip(events, verdicts, snapshots, strict=True):
        assert engine.apply(event) == verdict
        assert engine_snapshot(engine) == expected
    assert {"late", "duplicate", "accepted"} <= set(verdicts), "the sequence must exercise the whole rule"


def test_late_is_strictly_more_than_the_allowance_behind_the_watermark():
    assert LATENESS_US == 15 * MINUTE_US
    engine = Engine()
    assert engine.apply(Event("click", "a", "u", "p", T0, T0)) == "accepted"
    assert engine.apply(Event("click", "b", "u", "p", T0 - LATENESS_US, T0)) == "accepted"  # exactly 15 min
    assert engine.apply(Event("click", "c", "u", "p", T0 - LATENESS_US - 1, T0)) == "late"  # 1 us more
    assert engine.apply(Event("click", "a", "u", "p", T0, T0)) == "duplicate"
    assert engine.user_row("u")["us_clicks_30m"] == 2 and engine.user_row("u")["us_clicks_5m"] == 1


def test_late_event_inside_the_allowance_counts_as_if_on_time():
    on_time, shuffled = Engine(), Engine()
    a = Event("click", "a", "u", "p", T0, T0)
    b = Event("click", "b", "u", "p", T0 + 30 * SECOND_US, T0 + 30 * SECOND_US)
    for e in (a, b):
        on_time.apply(e)
    for e in (b, a):
        shuffled.apply(e)
    assert on_time.user_row("u") == shuffled.user_row("u")


def test_forgotten_ids_are_late_not_counted():
    engine = Engine()
    engine.apply(Event("click", "old", "u", "p", T0, T0))
    engine.apply(Event("click", "new", "u", "p", T0 + 20 * MINUTE_US, T0 + 20 * MINUTE_US))
    engine.prune()
    assert "old" not in engine.seen
    assert engine.apply(Event("click", "old", "u", "p", T0, T0)) == "late"
    assert engine.user_row("u")["us_clicks_30m"] == 2


def payload(**overrides):
    base = {
        "kind": "impression",
        "event_id": "imp1",
        "user_id": "u1",
        "product_id": "p1",
        "event_ts": T0,
        "ingested_at": T0 + SECOND_US,
        "surface": "home_feed",
        "position": 1,
        "request_id": "req1",
    }
    return json.dumps(base | overrides).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (payload(kind="view"), "unknown_kind"),
        (payload(user_id=None), "null_user_id"),
        (payload(event_ts="2026-11-07"), "bad_event_ts"),
        (payload(event_ts=True), "bad_event_ts"),
        (payload(product_id="p" * 65), "bad_product_id"),
        (payload(surface="feed_v2"), "unknown_surface"),
        (payload(position=0), "bad_position"),
        (payload(event_ts=T0 + 2 * SECOND_US), "future_event_ts"),
        (payload(kind="order", quantity=0, gmv=0.0), "bad_quantity"),
        (payload(kind="order", quantity=1, gmv=-3.0), "negative_gmv"),
    ],
)
def test_malformed_events_are_named(raw, reason):
    with pytest.raises(Malformed) as caught:
        parse(raw)
    assert caught.value.reason == reason


def test_a_good_event_parses():
    assert parse(payload()) == Event("impression", "imp1", "u1", "p1", T0, T0 + SECOND_US)
