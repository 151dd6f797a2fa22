"""Live sessions from the stored world: who shops now, on which surface, which candidates, and what they do.

Requests are drawn in batches ahead of time (users, surfaces and candidate lists vectorised, with the
per-impression noise of the true model drawn per candidate), and outcomes are drawn per batch of answers:
the true probabilities come from `simulator.traffic.true_probabilities` at the served positions, the clicks
and orders from `simulator.traffic.draw_outcomes`, the one generative model of the history.

A request is one page of a session (`simulator.sessions`, as in the history): a new session draws its pages
and intent; after its page is answered and the shopper has reacted, a session with pages left comes back a
viewing time and a pause later (`next_pages`), carrying its intent and the categories it clicked, which
enter the true probabilities of its next page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from simulator.campaigns import DAY_KINDS, DAY_US, campaign_of
from simulator.config import CATALOG, SURFACES, SimConfig
from simulator.entities import SECOND_US
from simulator.live.world_store import StoredWorld
from simulator.sessions import add_clicks, draw_plan, page_gap_us, session_terms
from simulator.traffic import (
    CatalogueView,
    DayState,
    Truth,
    catalogue_view,
    draw_candidates,
    draw_outcomes,
    sample_rows,
    session_shape,
    true_probabilities,
)


def day_kind(now_us: int) -> int:
    """Index into DAY_KINDS of the UTC day of `now_us` (the campaign calendar continues past the period)."""
    campaign = campaign_of(datetime.fromtimestamp(now_us / SECOND_US, UTC).date())
    if campaign is None:
        return DAY_KINDS.index("normal")
    return DAY_KINDS.index("mega" if campaign[1] else "campaign")


def faster_checkout(config: SimConfig, speedup: float) -> SimConfig:
    """The same world with the click-to-order delay divided by `speedup` (a demo device; 1.0 = the history's).

    Orders come a median 25 minutes after the click (up to 48 hours), so a run of a few minutes would be read
    before most of its orders exist. Dividing the delay changes when an order lands, not whether: the click and
    order probabilities, the quantities and the oracle's truth are untouched.
    """
    if speedup <= 0:
        raise ValueError(f"checkout speed-up must be positive, got {speedup}")
    if speedup == 1.0:
        return config
    orders = config.params.orders
    faster = orders.model_copy(
        update={
            "order_delay_median_min": orders.order_delay_median_min / speedup,
            "order_delay_max_h": orders.order_delay_max_h / speedup,
        }
    )
    return config.model_copy(update={"params": config.params.model_copy(update={"orders": faster})})


class LiveMarket:
    """The stored world as it stands on a live day: the incumbent's catalogue view and the day's panels."""

    def __init__(self, world: StoredWorld, now_us: int, checkout_speedup: float = 1.0) -> None:
        self.world = world
        config, days = world.config, world.days
        # what the shoppers' outcomes are drawn with: the world's model, the order delay possibly compressed
        self.outcome_config = faster_checkout(config, checkout_speedup)
        # days since the period began; the panels stay those of its last day (the world is not re-drawn)
        self.day = max(int((now_us - int(days.start_us[0])) // DAY_US), days.n - 1)
        age = (now_us - world.products.created_us) / DAY_US
        self.view: CatalogueView = catalogue_view(config, world.products, world.last_day.is_live, age, self.day)
        self.state = DayState(
            world.last_day.price,
            world.last_day.discount,
            world.last_day.rating,
            world.last_day.is_live,
            day_kind(now_us),
        )
        users = world.users
        self.active = users.first_day <= self.day
        tp = config.params.traffic
        self.hour_p = np.array(tp.local_hour_weights) / np.sum(tp.local_hour_weights)

    def user_weights(self, now_us: int) -> np.ndarray:
        """Who starts a session now: latent activity x the weight of each user's local hour, as traffic draws them."""
        users = self.world.users
        local_hour = self.local_hour(now_us, np.arange(users.n))
        return users.activity * self.active * self.hour_p[local_hour]

    def local_hour(self, ts_us: int | np.ndarray, user: np.ndarray) -> np.ndarray:
        utc_h = (np.asarray(ts_us) % DAY_US) / (3600 * SECOND_US)
        return np.floor(np.mod(utc_h + self.world.users.utc_offset_h[user], 24.0)).astype(np.int64)


@dataclass(frozen=True)
class SessionBatch:
    """`n` requests, each one page of a session; candidate k of request i is row `offsets[i] + k` of the flat
    candidate arrays."""

    user: np.ndarray  # user row per request
    surface: np.ndarray  # surface code per request
    offsets: np.ndarray  # (n + 1,)
    product: np.ndarray  # product row per candidate
    click_noise: np.ndarray  # the true model's per-impression noise, per candidate
    order_noise: np.ndarray
    session: np.ndarray  # session number per request (unique within a run)
    page: np.ndarray  # this page's number in its session, from 1
    pages: np.ndarray  # the session's planned pages
    intent: np.ndarray  # the session's intent category, or NO_INTENT
    interest: np.ndarray  # (n, categories): the session's clicks so far per category

    @property
    def n(self) -> int:
        return len(self.user)

    def candidates(self, i: int) -> np.ndarray:
        return self.product[self.offsets[i] : self.offsets[i + 1]]


@dataclass(frozen=True)
class Pages:
    """Pages to draw: per request its user, session and the session's state (as in `SessionBatch`)."""

    user: np.ndarray
    session: np.ndarray
    page: np.ndarray
    pages: np.ndarray
    intent: np.ndarray
    interest: np.ndarray
    due_us: np.ndarray  # when the shopper asks for the page

    @property
    def n(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> Pages:
        return Pages(*(getattr(self, f)[idx] for f in Pages.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Pages]) -> Pages:
        return Pages(*(np.concatenate([getattr(p, f) for p in parts]) for f in Pages.__dataclass_fields__))


def new_sessions(rng: np.random.Generator, market: LiveMarket, n: int, now_us: int, first_session: int) -> Pages:
    """`n` sessions starting now, numbered from `first_session`: who (activity x local hour), pages, intent."""
    world = market.world
    weights = market.user_weights(now_us)
    cdf = np.cumsum(weights)
    user = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), world.users.n - 1)
    pages, intent = draw_plan(rng, world.config, sample_rows(rng, np.cumsum(world.users.taste[user], axis=1)))
    return Pages(
        user=user,
        session=first_session + np.arange(n, dtype=np.int64),
        page=np.ones(n, dtype=np.int32),
        pages=pages,
        intent=intent,
        interest=np.zeros((n, len(CATALOG)), dtype=np.int32),
        due_us=np.full(n, now_us, dtype=np.int64),
    )


def draw_pages(rng: np.random.Generator, market: LiveMarket, pages: Pages) -> SessionBatch:
    """One request per page: surface, list and candidates as the history draws them, the true model's noise."""
    world = market.world
    config = world.config
    surface, length, query_cat = session_shape(rng, config, world.users, pages.user, pages.intent)
    slot_req, product = draw_candidates(rng, config, market.view, world.users, pages.user, surface, length, query_cat)
    counts = np.bincount(slot_req, minlength=pages.n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cp, op = config.params.clicks, config.params.orders
    click_noise = rng.normal(0.0, cp.noise_sd, len(product))
    order_noise = rng.normal(0.0, op.noise_sd, len(product))
    return SessionBatch(
        pages.user,
        surface.astype(np.int64),
        offsets,
        product,
        click_noise,
        order_noise,
        pages.session,
        pages.page,
        pages.pages,
        pages.intent,
        pages.interest,
    )


def draw_sessions(
    rng: np.random.Generator, market: LiveMarket, n: int, now_us: int, first_session: int = 0
) -> SessionBatch:
    """The first pages of `n` new sessions."""
    return draw_pages(rng, market, new_sessions(rng, market, n, now_us, first_session))


class Returning:
    """Sessions with pages left, each coming back for its next page when it is due."""

    def __init__(self) -> None:
        self.waiting: Pages | None = None

    def add(self, pages: Pages) -> None:
        if pages.n:
            self.waiting = pages if self.waiting is None else Pages.concat([self.waiting, pages])

    def __len__(self) -> int:
        return 0 if self.waiting is None else self.waiting.n

    def due(self, now_us: int, limit: int) -> Pages | None:
        """Up to `limit` pages due by `now_us`, earliest first; they leave the queue."""
        if self.waiting is None:
            return None
        ready = np.flatnonzero(self.waiting.due_us <= now_us)
        ready = ready[np.argsort(self.waiting.due_us[ready], kind="stable")][:limit]
        if len(ready) == 0:
            return None
        rest = np.setdiff1d(np.arange(self.waiting.n), ready)
        taken, self.waiting = self.waiting.take(ready), self.waiting.take(rest)
        return taken


def next_batch(
    rng: np.random.Generator, market: LiveMarket, returning: Returning, n: int, now_us: int, first_session: int
) -> SessionBatch:
    """`n` requests: the returning sessions' pages that are due, then new sessions (numbered from
    `first_session`) for the rest; a request rate is a page rate, whoever asks."""
    back = returning.due(now_us, n)
    parts = [] if back is None else [back]
    if n - (0 if back is None else back.n) > 0:
        parts.append(new_sessions(rng, market, n - (0 if back is None else back.n), now_us, first_session))
    return draw_pages(rng, market, Pages.concat(parts))


def next_pages(
    rng: np.random.Generator, market: LiveMarket, batch: SessionBatch, served: Served, out: Outcome
) -> Pages:
    """The answered requests whose sessions have pages left: their next page, with the interest their clicks
    added, due after the served list's viewing time and a pause. An unanswered request ends its session."""
    answer = np.flatnonzero(batch.page[served.session] < batch.pages[served.session])
    req = served.session[answer]
    interest = batch.interest[served.session].copy()
    clicked = out.clicked
    add_clicks(interest, out.imp_answer[clicked], market.world.products.category[out.imp_product[clicked]])
    last_ts = np.full(len(served.session), -1, dtype=np.int64)
    np.maximum.at(last_ts, out.imp_answer, out.imp_ts)
    viewed_s = np.maximum(last_ts - served.answered_us, 0) / SECOND_US
    due = served.answered_us + page_gap_us(rng, market.world.config, viewed_s)
    return Pages(
        user=batch.user[req],
        session=batch.session[req],
        page=batch.page[req] + 1,
        pages=batch.pages[req],
        intent=batch.intent[req],
        interest=interest[answer],
        due_us=due[answer],
    )


@dataclass(frozen=True)
class Served:
    """Answers to some sessions of a batch: per session, the served product rows in order, and when."""

    session: np.ndarray  # index into the batch, per answer
    answered_us: np.ndarray  # wall clock of each answer
    offsets: np.ndarray  # (n_answers + 1,) into `product`
    product: np.ndarray  # served product rows, in served order per answer


@dataclass(frozen=True)
class Outcome:
    """Every served impression with its truth and what the shopper did; per answer, the list's truth."""

    imp_answer: np.ndarray  # index into Served per impression
    imp_user: np.ndarray
    imp_product: np.ndarray
    imp_surface: np.ndarray
    imp_position: np.ndarray
    imp_ts: np.ndarray
    p_click: np.ndarray
    p_order: np.ndarray
    expected_value: np.ndarray
    clicked: np.ndarray  # impression rows
    clk_ts: np.ndarray
    ordered: np.ndarray  # rows of `clicked`
    ord_ts: np.ndarray
    quantity: np.ndarray
    unit_price: np.ndarray  # per order
    list_gmv: np.ndarray  # per answer: true expected GMV of the served order
    best_gmv: np.ndarray  # per answer: of the best order of the same candidates in as many slots


def _positions(offsets: np.ndarray) -> np.ndarray:
    lengths = np.diff(offsets)
    return (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths) + 1).astype(np.int32)


def candidate_truth(
    market: LiveMarket,
    batch: SessionBatch,
    rows: np.ndarray,
    user: np.ndarray,
    surface: np.ndarray,
    at_us: np.ndarray,
) -> Truth:
    """The true model of candidate rows `rows` of `batch`, shown to `user` on `surface` at `at_us` (per row), in
    the context of the row's session (its intent and the clicks of its earlier pages)."""
    world, config = market.world, market.world.config
    evening_lo, evening_hi = config.params.clicks.evening_hours
    hour = market.local_hour(at_us, user)
    request = np.searchsorted(batch.offsets, rows, side="right") - 1
    terms = session_terms(batch.intent, batch.interest, request, world.products.category[batch.product[rows]])
    return true_probabilities(
        config,
        world.users,
        world.merchants,
        world.products,
        market.state,
        user,
        batch.product[rows],
        surface,
        (hour >= evening_lo) & (hour <= evening_hi),
        batch.click_noise[rows],
        batch.order_noise[rows],
        terms.intent_match,
        terms.session_interest,
    )


def react(rng: np.random.Generator, market: LiveMarket, batch: SessionBatch, served: Served) -> Outcome:
    """The shoppers see the served lists in order: true probabilities at the served slots, then draws."""
    world = market.world
    config = world.config
    tp = config.params.traffic
    n_ans = len(served.session)
    lengths = np.diff(served.offsets)
    imp_answer = np.repeat(np.arange(n_ans), lengths)
    session = served.session[imp_answer]
    position = _positions(served.offsets)
    product = served.product

    # each served product's candidate row, to reuse the noise drawn with the session
    cand_session = np.repeat(np.arange(batch.n), np.diff(batch.offsets))
    n_prod = world.products.n
    cand_key = cand_session * n_prod + batch.product
    order = np.argsort(cand_key, kind="stable")
    at = order[np.searchsorted(cand_key, session * n_prod + product, sorter=order)]
    if not np.array_equal(batch.product[at], product):
        raise ValueError("a served product is not among the session's candidates")

    # the truth of every candidate of the answered sessions: the served ones, and the best order's
    cand_lengths = np.diff(batch.offsets)[served.session]
    cand_answer = np.repeat(np.arange(n_ans), cand_lengths)
    cand_rows = (
        np.repeat(batch.offsets[served.session], cand_lengths)
        + _positions(np.concatenate([[0], np.cumsum(cand_lengths)]))
        - 1
    )
    cand_user = batch.user[served.session][cand_answer]
    cand_surface = batch.surface[served.session][cand_answer]
    truth = candidate_truth(market, batch, cand_rows, cand_user, cand_surface, served.answered_us[cand_answer])
    inverse = np.full(len(batch.product), -1, dtype=np.int64)
    inverse[cand_rows] = np.arange(len(cand_rows))
    j = inverse[at]  # served impression -> its row in `truth`
    user, surface = cand_user[j], cand_surface[j]
    attraction, p_order, value, price = truth.attraction[j], truth.p_order[j], truth.expected_value[j], truth.price[j]
    p_click = truth.examination(position, surface) * attraction

    gap_s = np.array([tp.position_gap_seconds[s] for s in SURFACES])
    jitter = rng.uniform(*tp.position_jitter, len(product))
    offset_s = (position - 1) * gap_s[surface] * jitter + rng.random(len(product)) * 0.5
    imp_ts = served.answered_us[imp_answer] + (offset_s * SECOND_US).astype(np.int64)
    out = draw_outcomes(rng, market.outcome_config, imp_ts, p_click, p_order, truth.multi_buy[j])

    served_gmv = np.bincount(imp_answer, weights=p_click * p_order * value, minlength=n_ans)
    # rearrangement: examination falls with position, so the best order sorts by unexamined expected GMV
    cand_value = truth.attraction * truth.p_order * truth.expected_value
    rank = np.lexsort((-cand_value, cand_answer))
    best_pos = _positions(np.concatenate([[0], np.cumsum(cand_lengths)]))
    in_list = best_pos <= lengths[cand_answer[rank]]
    exam = truth.examination(best_pos, cand_surface[rank])
    best_gmv = np.bincount(cand_answer[rank][in_list], weights=(exam * cand_value[rank])[in_list], minlength=n_ans)
    return Outcome(
        imp_answer=imp_answer,
        imp_user=user,
        imp_product=product,
        imp_surface=surface,
        imp_position=position,
        imp_ts=imp_ts,
        p_click=p_click,
        p_order=p_order,
        expected_value=value,
        clicked=out.clicked,
        clk_ts=out.clk_ts,
        ordered=out.ordered,
        ord_ts=out.ord_ts,
        quantity=out.quantity,
        unit_price=price[out.clicked[out.ordered]],
        list_gmv=served_gmv,
        best_gmv=best_gmv,
    )
