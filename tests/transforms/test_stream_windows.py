"""The stream features' definitions and the late/duplicate rule, against a brute-force reference.

The reference recomputes every feature from scratch from the accepted events (the rule applied naively to the
whole arrival sequence), so it shares no code with the incremental engine (transforms/streaming/windows.py).
"""

from __future__ import annotations

import json
import pickle
import random

import pytest

from platform_common.category_stream import UNKNOWN_CATEGORY
from transforms.streaming.events import Event, Malformed, parse
from transforms.streaming.windows import LATENESS_US, MINUTE_US, SECOND_US, Engine

T0 = 1_794_000_000 * SECOND_US  # 2026-11-07 UTC
# p5 is missing on purpose: a click on it is listed as UNKNOWN_CATEGORY
CATALOGUE = {"p1": "fashion", "p2": "beauty", "p3": "fashion", "p4": "electronics"}


def newest_first(clicks: list[Event]) -> list[str]:
    ordered = sorted(clicks, key=lambda a: (a.event_ts, a.event_id), reverse=True)
    return [CATALOGUE.get(a.product_id, UNKNOWN_CATEGORY) for a in ordered]


def distinct(categories: list[str], n: int) -> list[str]:
    out: list[str] = []
    for c in categories:
        if c not in out and len(out) < n:
            out.append(c)
    return out


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
                "us_click_categories_30m": "|".join(
                    newest_first([a for a in mine if a.kind == "click" and t - 30 * MINUTE_US < a.event_ts <= t])[:20]
                ),
                "us_session_click_categories": "|".join(newest_first([a for a in session if a.kind == "click"])[:20]),
                "us_last_click_categories": "|".join(
                    distinct(
                        newest_first([a for a in mine if a.kind == "click" and a.event_ts > t - 240 * MINUTE_US]), 3
                    )  # fmt: skip
                ),
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
    engine = Engine(catalogue=CATALOGUE)
    listed: set[str] = set()
    for event, verdict, expected in zip(events, verdicts, snapshots, strict=True):
        assert engine.apply(event) == verdict
        assert engine_snapshot(engine) == expected
        listed |= {v["us_session_click_categories"] for v in expected.values() if v.get("us_session_click_categories")}
    assert {"late", "duplicate", "accepted"} <= set(verdicts), "the sequence must exercise the whole rule"
    # the category lists were exercised: several clicks in one session, and a product the catalogue lacks
    assert any("|" in s for s in listed) and any(UNKNOWN_CATEGORY in s for s in listed)


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


def click(event_id: str, product: str, ts: int, user: str = "u") -> Event:
    return Event("click", event_id, user, product, ts, ts)


def impression(event_id: str, ts: int, user: str = "u") -> Event:
    return Event("impression", event_id, user, "p1", ts, ts)


def categories(engine: Engine, user: str = "u") -> tuple[str, str, str]:
    row = engine.user_row(user)
    return row["us_click_categories_30m"], row["us_session_click_categories"], row["us_last_click_categories"]


def test_the_30_minute_list_has_the_clicks_in_the_half_open_window_to_the_second():
    """(t - 30 min, t]: a click exactly 30 min before t is out, one a second later is in; t is the newest event."""
    t = T0 + 2 * 3600 * SECOND_US
    engine = Engine(catalogue=CATALOGUE)
    engine.apply(click("c1", "p4", t - 30 * MINUTE_US - SECOND_US))  # before the edge
    engine.apply(click("c2", "p2", t - 30 * MINUTE_US))  # at the edge: out
    engine.apply(click("c3", "p1", t - 30 * MINUTE_US + SECOND_US))  # a second after: in
    engine.apply(impression("i1", t))  # t: the user's newest event
    assert categories(engine)[0] == "fashion"
    assert engine.user_row("u")["us_clicks_30m"] == 1  # the same window as the click count
    # each click is at most a second from the previous event: one session, all three clicks
    assert categories(engine)[1] == "fashion|beauty|electronics"
    # a click at t itself is in, and newest first
    engine.apply(click("c4", "p2", t))
    assert categories(engine)[0] == "beauty|fashion"


def test_the_window_slides_with_the_users_newest_event():
    engine = Engine(catalogue=CATALOGUE)
    engine.apply(click("c1", "p2", T0))
    assert categories(engine) == ("beauty", "beauty", "beauty")
    engine.apply(impression("i1", T0 + 30 * MINUTE_US - SECOND_US))  # still in (t - 30 min, t], same session
    assert categories(engine) == ("beauty", "beauty", "beauty")
    engine.apply(impression("i2", T0 + 30 * MINUTE_US))  # exactly 30 min after the click: out of the window
    assert categories(engine) == ("", "beauty", "beauty")  # the session goes on (gaps of at most 30 min)
    engine.apply(impression("i3", T0 + 61 * MINUTE_US))  # a gap of 31 min: a new session
    assert categories(engine) == ("", "", "beauty")  # the last clicked categories reach back 4 h
    engine.apply(impression("i4", T0 + 240 * MINUTE_US))  # exactly 4 h after the click: forgotten
    assert categories(engine) == ("", "", "")


def test_late_and_duplicate_clicks_follow_the_rule():
    engine = Engine(catalogue=CATALOGUE)
    engine.apply(click("c1", "p1", T0))
    engine.apply(click("c2", "p4", T0 + 10 * MINUTE_US))  # watermark T0 + 10 min
    assert engine.apply(click("c1", "p1", T0)) == "duplicate"  # re-sent: not listed twice
    assert engine.apply(click("c3", "p2", T0 - 5 * MINUTE_US - 1)) == "late"  # 1 us over the 15 min allowance
    assert categories(engine)[1] == "electronics|fashion"
    # late within the allowance: placed by its event time, not its arrival
    assert engine.apply(click("c4", "p2", T0 - 5 * MINUTE_US)) == "accepted"
    assert categories(engine) == ("electronics|fashion|beauty",) * 3


def test_arrival_order_within_the_allowance_and_ties_do_not_matter():
    events = [click("c2", "p2", T0), click("c1", "p4", T0), click("c3", "p1", T0 + 10 * SECOND_US)]
    rows = []
    for order in (events, events[::-1], [events[1], events[2], events[0]]):
        engine = Engine(catalogue=CATALOGUE)
        for e in order:
            engine.apply(e)
        rows.append(engine.user_row("u"))
    assert rows[0] == rows[1] == rows[2]
    assert rows[0]["us_session_click_categories"] == "fashion|beauty|electronics"  # the tie: greater id first


def test_an_unknown_product_is_listed_as_unknown_and_counted():
    engine = Engine(catalogue=CATALOGUE)
    assert engine.apply(click("c1", "p999", T0)) == "accepted"
    engine.apply(click("c2", "p2", T0 + SECOND_US))
    assert categories(engine) == ("beauty|unknown", "beauty|unknown", "beauty|unknown")
    assert engine.counts["click_unknown_category"] == 1
    empty = Engine()  # no catalogue at all: every click unknown, never an error
    empty.apply(click("c1", "p1", T0))
    assert categories(empty) == ("unknown", "unknown", "unknown")


def test_lists_are_capped_and_the_last_categories_are_three_distinct():
    engine = Engine(catalogue=CATALOGUE)
    products = ["p1", "p2", "p4", "p5"]
    for i in range(25):
        engine.apply(click(f"c{i:02d}", products[i % 4], T0 + i * SECOND_US))
    listed, session, last = categories(engine)
    assert len(listed.split("|")) == len(session.split("|")) == 20
    assert listed.split("|")[:4] == ["fashion", "unknown", "electronics", "beauty"]  # c24 is p1
    assert last == "fashion|unknown|electronics"


def test_impressions_list_no_category_and_other_users_stay_apart():
    engine = Engine(catalogue=CATALOGUE)
    engine.apply(impression("i1", T0))
    engine.apply(click("c1", "p4", T0 + SECOND_US, user="v"))
    assert categories(engine) == ("", "", "")
    assert categories(engine, "v") == ("electronics", "electronics", "electronics")


def test_the_catalogue_is_not_checkpointed_and_old_checkpoints_load():
    engine = Engine(catalogue=CATALOGUE)
    engine.apply(click("c1", "p4", T0))
    restored = pickle.loads(pickle.dumps(engine))
    assert restored.catalogue == {}  # the processor sets it again from the raw products table
    assert categories(restored) == categories(engine)
    old = pickle.loads(pickle.dumps(engine))
    del old.users["u"].click_categories  # a user state pickled before the field existed
    del old.users["u"].breaks  # and before the session starts were kept
    again = pickle.loads(pickle.dumps(old))
    again.catalogue = CATALOGUE
    again.apply(click("c2", "p2", T0 + SECOND_US))
    assert categories(again) == ("beauty", "beauty", "beauty")
    again.apply(click("c3", "p2", T0 + 40 * MINUTE_US))  # a new session: the rebuilt session starts say so
    assert again.users["u"].breaks == [T0 + 40 * MINUTE_US]
    assert again.user_row("u")["us_session_clicks"] == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_a_prune_forgets_exactly_the_ids_behind_the_lateness_window(seed: int) -> None:
    """The heap-based prune keeps what rebuilding the id map with the rule keeps, across pickling."""
    rng = random.Random(seed)
    engine = Engine()
    accepted: dict[str, int] = {}
    t = T0
    for k in range(3000):
        t += rng.randint(0, 2 * SECOND_US)
        ts = t - rng.randint(0, 20 * MINUTE_US)  # some late, most within the window
        event = impression(f"e{rng.randint(0, k)}" if rng.random() < 0.1 else f"n{k}", ts)
        if engine.apply(event) == "accepted":
            accepted[event.event_id] = ts
        if k % 500 == 499:
            engine.prune()
            assert engine.watermark is not None
            kept = {i: s for i, s in accepted.items() if s >= engine.watermark - LATENESS_US}
            assert engine.seen == kept and len(kept) < len(accepted)
            engine = pickle.loads(pickle.dumps(engine))
