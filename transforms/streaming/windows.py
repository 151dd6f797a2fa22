"""The one definition of the streamed features, and the rule for late and duplicate events.

Used unchanged by the stream processor (events as they arrive) and by the backfill (historical raw events in
landing order), so the two can only differ in what they are fed. The rule, applied to events in arrival order:

1. A malformed event is quarantined (transforms.streaming.events).
2. **Late**: an event whose event time is more than `LATENESS` (15 min) behind the watermark (the greatest event
   time accepted so far, over all events) is dropped and counted as late. Checked first, so the reason does
   not depend on how long ids are remembered.
3. **Duplicate**: an event whose id was already accepted is dropped and counted (ids are remembered while they
   could still be on time, i.e. while their event time is within `LATENESS` of the watermark).
4. Otherwise the event is accepted: the watermark moves up to its event time, and its user's and product's
   state take it in, in event-time order whatever order it came in (so an event up to 15 min late counts exactly
   as if it had come on time).

The features of an entity describe it as of `t` = its newest accepted event time (impressions and clicks):
counts over event-time windows ending at t (`(t - w, t]`), the session (going back from t over its events
while the gap between consecutive ones is at most 30 min, and never more than 4 h back), seconds from its
newest click to t. Orders are checked, deduplicated and move the watermark, but feed no feature yet.

A user's recent click categories (issue 17, section 2; the format and the features derived from it are in
platform_common/category_stream.py): each accepted click takes its product's `category_l1` from the engine's
catalogue when it is accepted (`category_stream.UNKNOWN_CATEGORY` for a product the catalogue lacks), and the
user row lists them newest first, by (event time, event id) descending, so arrival order does not matter:
the clicks in `(t - 30 min, t]`, those of the current session (the same walk as the session counts), and the
last 3 distinct categories among the clicks in `(t - 4 h, t]` (what the user's state remembers).
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from platform_common.category_stream import LAST_DISTINCT, MAX_LISTED, UNKNOWN_CATEGORY, join
from transforms.streaming.events import Event

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
# covers the landing zone's normal lag (5 s to 10 min after the event); planted late rows land days later
LATENESS_US = 15 * MINUTE_US
SESSION_GAP_US = 30 * MINUTE_US
SESSION_MAX_US = 4 * 60 * MINUTE_US
PRODUCT_WINDOW_US = 60 * MINUTE_US
# state older than this before an entity's newest event can never count again
USER_HORIZON_US = SESSION_MAX_US
PRODUCT_HORIZON_US = PRODUCT_WINDOW_US
_PRUNE_EVERY = 4096  # accepted events between two passes over the remembered ids


def _in_window(times: list[int], end: int, width: int) -> int:
    """How many of the sorted `times` lie in (end - width, end]."""
    return bisect.bisect_right(times, end) - bisect.bisect_right(times, end - width)


def _insert(times: list[int], ts: int, horizon_start: int) -> None:
    bisect.insort(times, ts)
    cut = bisect.bisect_left(times, horizon_start)
    if cut:
        del times[:cut]


def _advance(state: UserState | ProductState, event: Event) -> None:
    """The newest event: greatest event time, ties to the greatest id (so arrival order within a tie does not
    matter)."""
    if (event.event_ts, event.event_id) > (state.as_of, state.last_event_id):
        state.as_of = event.event_ts
        state.last_event_id = event.event_id


@dataclass
class UserState:
    impressions: list[int] = field(default_factory=list)  # sorted event times within the horizon
    clicks: list[int] = field(default_factory=list)
    both: list[int] = field(default_factory=list)  # impressions and clicks together, for the session walk
    as_of: int = 0
    last_click: int | None = None
    last_event_id: str = ""
    # (event time, event id, category) of each click within the horizon, sorted
    click_categories: list[tuple[int, str, str]] = field(default_factory=list)
    # the event times in `both` (first occurrence) more than 30 min after the one before: where sessions start, kept
    # as events come, so `session_start` is two bisections instead of a walk over the session (at tiny no session
    # ends: the walk covered up to 26,000 events, 586 us per row; docs/benchmarks.md)
    breaks: list[int] = field(default_factory=list, repr=False, compare=False)

    def add(self, event: Event, category: str = UNKNOWN_CATEGORY) -> None:
        """Take an accepted impression or click in; `category` is a click's product category."""
        _advance(self, event)
        horizon = self.as_of - USER_HORIZON_US
        if event.kind == "click":
            self.last_click = event.event_ts if self.last_click is None else max(self.last_click, event.event_ts)
            bisect.insort(self.click_categories, (event.event_ts, event.event_id, category))
        cut = bisect.bisect_left(self.click_categories, (horizon,))
        if cut:
            del self.click_categories[:cut]
        self._insert_both(event.event_ts, horizon)
        for times, kind in ((self.impressions, "impression"), (self.clicks, "click")):
            if event.kind == kind:
                _insert(times, event.event_ts, horizon)
            else:
                cut = bisect.bisect_left(times, horizon)
                if cut:
                    del times[:cut]

    def _insert_both(self, ts: int, horizon_start: int) -> None:
        both, breaks = self.both, self.breaks
        k = bisect.bisect_right(both, ts)  # after equal times: the next one, if any, is greater
        prev = both[k - 1] if k > 0 else None
        nxt = both[k] if k < len(both) else None
        both.insert(k, ts)
        if nxt is not None and prev is not None and nxt - prev > SESSION_GAP_US:
            del breaks[bisect.bisect_left(breaks, nxt)]  # no longer after a gap: `ts` is in between
        if prev is not None and ts - prev > SESSION_GAP_US:
            bisect.insort(breaks, ts)
        if nxt is not None and nxt - ts > SESSION_GAP_US:
            bisect.insort(breaks, nxt)
        cut = bisect.bisect_left(both, horizon_start)
        if cut:
            del both[:cut]
        if both and breaks and breaks[0] <= both[0]:
            del breaks[: bisect.bisect_right(breaks, both[0])]  # the first event has no gap before it

    def session_start(self) -> int | None:
        """The event time of the session's first event: going back from `as_of` while gaps <= 30 min, within 4 h
        (None before any event). The newest gap start, or the first event within 4 h if later."""
        if not self.both:
            return None
        start = self.both[bisect.bisect_right(self.both, self.as_of - SESSION_MAX_US)]  # both[-1] == as_of
        return max(start, self.breaks[-1]) if self.breaks else start

    def session_counts(self) -> tuple[int, int]:
        """(impressions, clicks) from the session's first event to `as_of`."""
        start = self.session_start()
        if start is None:
            return 0, 0
        events = bisect.bisect_right(self.both, self.as_of) - bisect.bisect_left(self.both, start)
        clicks = _in_window(self.clicks, self.as_of, self.as_of - start + 1)
        return events - clicks, clicks

    def newest_click_categories(self, since: int) -> list[str]:
        """Categories of the clicks with event time >= `since` (all are <= as_of, the newest event), newest first."""
        start = bisect.bisect_left(self.click_categories, (since,))
        return [c for _, _, c in reversed(self.click_categories[start:])]

    def category_features(self) -> dict[str, str]:
        t = self.as_of
        start = self.session_start()
        last: list[str] = []
        for category in self.newest_click_categories(t - SESSION_MAX_US + 1):
            if category not in last:
                last.append(category)
                if len(last) == LAST_DISTINCT:
                    break
        return {
            "us_click_categories_30m": join(self.newest_click_categories(t - 30 * MINUTE_US + 1)[:MAX_LISTED]),
            "us_session_click_categories": join(
                [] if start is None else self.newest_click_categories(start)[:MAX_LISTED]
            ),
            "us_last_click_categories": join(last),
        }

    def features(self) -> dict[str, Any]:
        t = self.as_of
        session_impressions, session_clicks = self.session_counts()
        return {
            "us_clicks_5m": _in_window(self.clicks, t, 5 * MINUTE_US),
            "us_clicks_30m": _in_window(self.clicks, t, 30 * MINUTE_US),
            "us_impressions_30m": _in_window(self.impressions, t, 30 * MINUTE_US),
            "us_session_impressions": session_impressions,
            "us_session_clicks": session_clicks,
            "us_seconds_since_click": None if self.last_click is None else (t - self.last_click) / SECOND_US,
        } | self.category_features()


@dataclass
class ProductState:
    impressions: list[int] = field(default_factory=list)
    clicks: list[int] = field(default_factory=list)
    as_of: int = 0
    last_event_id: str = ""

    def add(self, event: Event) -> None:
        _advance(self, event)
        horizon = self.as_of - PRODUCT_HORIZON_US
        for times, kind in ((self.impressions, "impression"), (self.clicks, "click")):
            if event.kind == kind:
                _insert(times, event.event_ts, horizon)
            else:
                cut = bisect.bisect_left(times, horizon)
                if cut:
                    del times[:cut]

    def features(self) -> dict[str, Any]:
        return {
            "ps_clicks_1h": _in_window(self.clicks, self.as_of, PRODUCT_WINDOW_US),
            "ps_impressions_1h": _in_window(self.impressions, self.as_of, PRODUCT_WINDOW_US),
        }


@dataclass
class Engine:
    """Every entity's state, the watermark and the remembered ids: what a checkpoint saves."""

    watermark: int | None = None
    users: dict[str, UserState] = field(default_factory=dict)
    products: dict[str, ProductState] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # accepted event id -> event time
    counts: Counter[str] = field(default_factory=Counter)
    _since_prune: int = 0
    # (event time, id) of every remembered id, a min-heap: a prune pops what fell out of the lateness window
    # instead of rebuilding `seen` (100 ms per prune at 115,000 remembered ids, a third of a batch's apply time)
    _expiry: list[tuple[int, str]] = field(default_factory=list, repr=False, compare=False)
    # product id -> category_l1 (transforms/streaming/catalogue.py); not checkpointed: the processor and the
    # backfill set it from the catalogue when they start
    catalogue: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("catalogue", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.catalogue = {}
        if "_expiry" not in state:  # a checkpoint written before the heap existed
            self._expiry = [(ts, event_id) for event_id, ts in self.seen.items()]
            heapq.heapify(self._expiry)
        for user in self.users.values():  # a checkpoint written before click categories existed
            if not hasattr(user, "click_categories"):
                user.click_categories = []
            if not hasattr(user, "breaks"):  # or before the session starts were kept
                b = user.both
                user.breaks = [b[j] for j in range(1, len(b)) if b[j] - b[j - 1] > SESSION_GAP_US]

    def category(self, product_id: str) -> str:
        """A clicked product's category; UNKNOWN_CATEGORY (counted) when the catalogue lacks it."""
        found = self.catalogue.get(product_id)
        if found is None:
            self.counts["click_unknown_category"] += 1
            return UNKNOWN_CATEGORY
        return found

    def apply(self, event: Event) -> str:
        """Take one event in; returns `accepted`, `late` or `duplicate`."""
        if self.watermark is not None and event.event_ts < self.watermark - LATENESS_US:
            self.counts["late"] += 1
            return "late"
        if event.event_id in self.seen:
            self.counts["duplicate"] += 1
            return "duplicate"
        self.seen[event.event_id] = event.event_ts
        heapq.heappush(self._expiry, (event.event_ts, event.event_id))
        self.watermark = event.event_ts if self.watermark is None else max(self.watermark, event.event_ts)
        self.counts["accepted"] += 1
        self.counts[f"accepted_{event.kind}"] += 1
        if event.kind in ("impression", "click"):
            category = self.category(event.product_id) if event.kind == "click" else UNKNOWN_CATEGORY
            self.users.setdefault(event.user_id, UserState()).add(event, category)
            self.products.setdefault(event.product_id, ProductState()).add(event)
        self._since_prune += 1
        if self._since_prune >= _PRUNE_EVERY:
            self.prune()
        return "accepted"

    def prune(self) -> None:
        """Forget ids that can no longer come on time (their duplicates are late by rule 2)."""
        self._since_prune = 0
        if self.watermark is None:
            return
        oldest = self.watermark - LATENESS_US
        expiry, seen = self._expiry, self.seen
        while expiry and expiry[0][0] < oldest:
            del seen[heapq.heappop(expiry)[1]]  # an id is remembered once: duplicates are never added again

    def user_row(self, user_id: str) -> dict[str, Any]:
        state = self.users[user_id]
        return {"user_id": user_id, "event_time": state.as_of, "last_event_id": state.last_event_id} | state.features()

    def product_row(self, product_id: str) -> dict[str, Any]:
        state = self.products[product_id]
        return {
            "product_id": product_id,
            "event_time": state.as_of,
            "last_event_id": state.last_event_id,
        } | state.features()
