"""Requests, the incumbent recommender's candidate lists, and the user's clicks and orders: the pieces.

Per request: surface and list -> candidates -> true probabilities -> sampled clicks and orders. The day
loop that strings requests into sessions of several pages is `simulator.days`; live mode uses the same
pieces (`simulator.live.session`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.campaigns import DAY_KINDS
from simulator.config import CATALOG, SURFACES, TIERS, SimConfig
from simulator.entities import SECOND_US, Merchants, Panels, Products, Users
from simulator.sessions import NO_INTENT

ProgressFn = Callable[[str, int, int], None]

TASTE, POPULAR, RANDOM, LIVE, QUERY = range(5)
SEARCH = SURFACES.index("search")
LIVE_STREAM = SURFACES.index("live_stream")
# Keep uniforms strictly inside (0, 1) so float rounding at a CDF's edges never crosses into a neighbour.
_EPS = 1e-9


DayEvents = dict[str, np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def sample_rows(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a row-wise CDF matrix."""
    r = rng.random(len(cdf))[:, None] * cdf[:, -1:]
    return np.minimum((cdf < r).sum(axis=1), cdf.shape[1] - 1)


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return _EPS + (1 - 2 * _EPS) * rng.random(n)


class CategorySampler:
    """Weighted draws of a product within a given category, all categories in one searchsorted."""

    def __init__(self, category: np.ndarray, n_categories: int) -> None:
        self.order = np.argsort(category, kind="stable")
        self.sorted_category = category[self.order]
        self.n_categories = n_categories
        self.key = np.zeros(len(category))
        self.nonempty = np.zeros(n_categories, dtype=bool)

    def fit(self, weights: np.ndarray) -> CategorySampler:
        w = weights[self.order]
        totals = np.bincount(self.sorted_category, weights=w, minlength=self.n_categories)
        before = np.concatenate([[0.0], np.cumsum(totals)[:-1]])
        within = (np.cumsum(w) - before[self.sorted_category]) / np.where(totals > 0, totals, 1.0)[self.sorted_category]
        self.key = self.sorted_category + np.minimum(within, 1.0)
        self.nonempty = totals > 0
        return self

    def sample(self, category: np.ndarray, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.key, category + u, side="left")
        return self.order[np.minimum(idx, len(self.order) - 1)]


def weighted_sample(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights)
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="left"), len(weights) - 1)


def chunk_positions(group: np.ndarray) -> np.ndarray:
    """1-based rank of each row inside its run of equal (sorted) group values."""
    n = len(group)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return (np.arange(n) - np.repeat(starts, lengths) + 1).astype(np.int32)


def session_shape(
    rng: np.random.Generator, config: SimConfig, users: Users, req_user: np.ndarray, intent: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(surface, list length, query category) of each request of `req_user`; a search in a session with an
    `intent` (NO_INTENT: none) searches the intent's category."""
    tp = config.params.traffic
    n_req = len(req_user)
    len_lo = np.array([tp.list_length[s][0] for s in SURFACES])
    len_hi = np.array([tp.list_length[s][1] for s in SURFACES])
    surface = sample_rows(rng, np.cumsum(users.surface_pref, axis=1)[req_user])
    length = rng.integers(len_lo[surface], len_hi[surface] + 1)
    taste_cdf = np.cumsum(users.taste[req_user], axis=1)
    query_cat = np.where(
        rng.random(n_req) < tp.search_query_from_taste,
        sample_rows(rng, taste_cdf),
        rng.integers(0, len(CATALOG), n_req),
    )
    if intent is not None:
        query_cat = np.where(intent != NO_INTENT, intent, query_cat)
    return surface, length, query_cat


@dataclass(frozen=True)
class CatalogueView:
    """The incumbent recommender's view of the catalogue on one day: what it can show, and how popular."""

    pop_w: np.ndarray
    live_w: np.ndarray
    available: np.ndarray
    pop_sampler: CategorySampler
    uniform_sampler: CategorySampler


def catalogue_view(
    config: SimConfig,
    products: Products,
    merchant_live: np.ndarray,
    age_days: np.ndarray,
    day: int,
    pop_sampler: CategorySampler | None = None,
    uniform_sampler: CategorySampler | None = None,
) -> CatalogueView:
    """`merchant_live`: each merchant's live flag that day; `age_days`: each product's age in days."""
    n_cat = len(CATALOG)
    available = products.first_day <= day
    ramp = np.clip(age_days / config.params.products.popularity_ramp_days, 0.05, 1.0)
    pop_w = products.popularity * ramp * available
    pop = (pop_sampler or CategorySampler(products.category, n_cat)).fit(pop_w)
    uniform = (uniform_sampler or CategorySampler(products.category, n_cat)).fit(available.astype(np.float64))
    live_w = pop_w * merchant_live[products.merchant]
    return CatalogueView(pop_w, live_w, available, pop, uniform)


def draw_candidates(
    rng: np.random.Generator,
    config: SimConfig,
    view: CatalogueView,
    users: Users,
    req_user: np.ndarray,
    surface: np.ndarray,
    length: np.ndarray,
    query_cat: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(request row, product) of every candidate from the incumbent's sources, unique per request, in draw order."""
    tp = config.params.traffic
    mix_cdf = np.cumsum(np.array([tp.candidate_mix[s] for s in SURFACES]), axis=1)
    mix_cdf[SEARCH] = 1.0  # unused: search slots are overwritten with QUERY
    slot_req = np.repeat(np.arange(len(req_user)), length)
    n_slots = len(slot_req)
    slot_user = req_user[slot_req]
    slot_surface = surface[slot_req]
    source = sample_rows(rng, mix_cdf[slot_surface])
    source[slot_surface == SEARCH] = QUERY
    slot_cat = sample_rows(rng, np.cumsum(users.taste, axis=1)[slot_user])
    slot_cat = np.where(source == QUERY, query_cat[slot_req], slot_cat)

    if view.live_w.sum() == 0:
        source[source == LIVE] = POPULAR
    empty_cat = ~view.pop_sampler.nonempty[slot_cat] & ((source == TASTE) | (source == QUERY))
    source[empty_cat] = POPULAR

    u = _uniform(rng, n_slots)
    product = np.zeros(n_slots, dtype=np.int64)
    m = source == TASTE
    product[m] = view.pop_sampler.sample(slot_cat[m], u[m])
    m = source == QUERY
    by_pop = rng.random(n_slots) < tp.search_popularity_weighted
    product[m & by_pop] = view.pop_sampler.sample(slot_cat[m & by_pop], u[m & by_pop])
    product[m & ~by_pop] = view.uniform_sampler.sample(slot_cat[m & ~by_pop], u[m & ~by_pop])
    m = source == POPULAR
    product[m] = weighted_sample(view.pop_w, u[m])
    m = source == RANDOM
    avail_idx = np.flatnonzero(view.available)
    product[m] = avail_idx[(u[m] * len(avail_idx)).astype(np.int64)]
    m = source == LIVE
    if m.any():
        product[m] = weighted_sample(view.live_w, u[m])

    # a product appears at most once per list
    _, first = np.unique(slot_req * len(view.pop_w) + product, return_index=True)
    keep = np.sort(first)
    return slot_req[keep], product[keep]


def taste_affinity(config: SimConfig, users: Users, user: np.ndarray, category: np.ndarray) -> np.ndarray:
    n_cat = len(CATALOG)
    return np.clip(np.log(np.maximum(n_cat * users.taste[user, category], 1e-12)), *config.params.clicks.affinity_clip)


@dataclass(frozen=True)
class DayState:
    """One day of the panels: per product price and discount, per merchant rating and live flag."""

    price: np.ndarray
    discount: np.ndarray
    rating: np.ndarray
    is_live: np.ndarray
    kind: int  # index into DAY_KINDS

    @staticmethod
    def of(panels: Panels, d: int, kind: int) -> DayState:
        return DayState(panels.price[:, d], panels.discount[:, d], panels.rating[:, d], panels.is_live[:, d], kind)


@dataclass(frozen=True)
class Truth:
    """Per impression: attractiveness (click probability at an examined slot), order and value truth."""

    attraction: np.ndarray
    p_order: np.ndarray
    expected_value: np.ndarray
    price: np.ndarray
    multi_buy: np.ndarray
    eta: np.ndarray  # examination exponent per surface

    def examination(self, position: np.ndarray, surface: np.ndarray) -> np.ndarray:
        """Position bias: the chance a slot is looked at, falling as position^-eta."""
        return position ** (-self.eta[surface])


def true_probabilities(
    config: SimConfig,
    users: Users,
    merchants: Merchants,
    products: Products,
    state: DayState,
    user: np.ndarray,
    product: np.ndarray,
    surface: np.ndarray,
    evening: np.ndarray,
    click_noise: np.ndarray,
    order_noise: np.ndarray,
    intent_match: np.ndarray | None = None,
    session_interest: np.ndarray | None = None,
    click_offset: float = 0.0,
) -> Truth:
    """The generative model's truth for (user, product, surface) impressions: history and live share it.

    p_click = examination(position) x attraction; the noise terms are per impression and drawn by the caller.
    The session terms (`simulator.sessions`): `intent_match` (the product is in the session's intent category)
    and `session_interest` (the session's clicks so far in the product's category, capped here); None: no
    session context (the merchant panel's audience, which adds `click_offset` instead: see `SessionParams`).
    """
    cp = config.params.clicks
    op = config.params.orders
    sp = config.params.sessions
    kind = state.kind
    eta = np.array([cp.examination_eta[s] for s in SURFACES])
    surface_offset = np.array([cp.surface_offset[s] for s in SURFACES])
    click_tier = np.array([cp.tier_weight[t] for t in TIERS])
    order_tier = np.array([op.tier_weight[t] for t in TIERS])
    click_campaign = np.array([cp.campaign_weight[k] for k in DAY_KINDS])
    order_campaign = np.array([op.campaign_weight[k] for k in DAY_KINDS])
    cat_median = np.array([c.median_price for c in CATALOG])

    category = products.category[product]
    affinity = taste_affinity(config, users, user, category)
    merchant = products.merchant[product]
    price = state.price[product]
    discount = state.discount[product]
    rating = state.rating[merchant]
    live = state.is_live[merchant] & (surface == LIVE_STREAM)
    tier = merchants.tier[merchant]
    sens = users.price_sensitivity[user]
    price_rel = np.log(price / cat_median[category])
    quality = products.quality[product]
    click_logit = (
        cp.intercept
        + surface_offset[surface]
        + users.click_bias[user]
        + cp.affinity_weight * affinity
        + cp.quality_weight * quality
        - cp.price_weight * sens * price_rel
        + cp.discount_weight * discount
        + cp.live_weight * live
        + click_campaign[kind]
        + cp.rating_weight * (rating - 4.5)
        + click_tier[tier]
        + cp.evening_weight * evening
        + click_offset
        + click_noise
    )
    order_logit = (
        op.intercept
        + users.buy_bias[user]
        + op.affinity_weight * affinity
        + op.quality_weight * quality
        - op.price_weight * sens * price_rel
        + op.discount_weight * discount
        + op.rating_weight * (rating - 4.5)
        + order_campaign[kind]
        + op.live_weight * live
        + order_tier[tier]
        + op.ios_weight * (users.device[user] == 1)
        + order_noise
    )
    # the session terms, in place: no temporaries of the audience's size where there is no session (the panel)
    if intent_match is not None:
        click_logit += sp.intent_click_weight * intent_match
        order_logit += sp.intent_order_weight * intent_match
    if session_interest is not None:
        click_logit += sp.interest_click_weight * np.minimum(session_interest, sp.interest_cap)
    mega = op.quantity_mega_multiplier if DAY_KINDS[kind] == "mega" else 1.0
    multi_buy = mega * op.quantity_base / (1.0 + price / op.quantity_price_scale)
    expected_value = price * (1.0 + 2.0 * multi_buy)
    return Truth(sigmoid(click_logit), sigmoid(order_logit), expected_value, price, multi_buy, eta)


@dataclass(frozen=True)
class Outcomes:
    clicked: np.ndarray  # impression rows clicked
    clk_ts: np.ndarray
    ordered: np.ndarray  # rows of `clicked` that ordered
    ord_ts: np.ndarray
    quantity: np.ndarray


def draw_outcomes(
    rng: np.random.Generator,
    config: SimConfig,
    imp_ts: np.ndarray,
    p_click: np.ndarray,
    p_order: np.ndarray,
    multi_buy: np.ndarray,
) -> Outcomes:
    """Clicks, then orders among the clicks, with their delays and quantities, from the true probabilities."""
    op = config.params.orders
    n_imp = len(imp_ts)
    clicked = np.flatnonzero(rng.random(n_imp) < p_click)
    click_delay = rng.lognormal(np.log(op.click_delay_median_s), op.click_delay_sigma, len(clicked))
    clk_ts = imp_ts[clicked] + (np.maximum(click_delay, 0.5) * SECOND_US).astype(np.int64)
    ordered = np.flatnonzero(rng.random(len(clicked)) < p_order[clicked])
    ord_imp = clicked[ordered]
    delay_min = np.minimum(
        rng.lognormal(np.log(op.order_delay_median_min), op.order_delay_sigma, len(ordered)),
        op.order_delay_max_h * 60.0,
    )
    ord_ts = clk_ts[ordered] + (delay_min * 60.0 * SECOND_US).astype(np.int64)
    quantity = 1 + rng.binomial(2, np.minimum(multi_buy[ord_imp], 1.0))
    return Outcomes(clicked, clk_ts, ordered, ord_ts, quantity.astype(np.int32))
