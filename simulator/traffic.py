"""Requests, the incumbent recommender's candidate lists, and the user's clicks and orders.

One vectorised pass per simulated day: sessions -> slots -> candidates -> ranking -> true
probabilities -> sampled clicks and orders. The true probabilities are kept for the oracle. Days are
yielded one at a time (`simulator.ordering` numbers them chronologically), so memory holds one day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from simulator.campaigns import DAY_KINDS, DAY_US, Days
from simulator.config import CATALOG, SURFACES, TIERS, SimConfig
from simulator.entities import SECOND_US, Merchants, Panels, Products, Users

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


def _chunk_positions(group: np.ndarray) -> np.ndarray:
    """1-based rank of each row inside its run of equal (sorted) group values."""
    n = len(group)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return (np.arange(n) - np.repeat(starts, lengths) + 1).astype(np.int32)


def session_shape(
    rng: np.random.Generator, config: SimConfig, users: Users, req_user: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(surface, list length, query category) of each request of `req_user`."""
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
) -> Truth:
    """The generative model's truth for (user, product, surface) impressions: history and live share it.

    p_click = examination(position) x attraction; the noise terms are per impression and drawn by the caller.
    """
    cp = config.params.clicks
    op = config.params.orders
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


def simulate_days(
    config: SimConfig,
    days: Days,
    users: Users,
    merchants: Merchants,
    products: Products,
    panels: Panels,
    rng: np.random.Generator,
    progress: ProgressFn | None = None,
) -> Iterator[DayEvents]:
    """Each day's events in generation order; row references (`clk_imp`, `ord_clk`) are day-local."""
    tp = config.params.traffic
    cp = config.params.clicks
    op = config.params.orders
    n_cat = len(CATALOG)
    kinds = days.kind_names()

    # Session rates: scale each user's latent activity so the period lands near the target volume.
    surface_mix = np.array([tp.surface_mix[s] for s in SURFACES])
    surface_mix /= surface_mix.sum()
    len_lo = np.array([tp.list_length[s][0] for s in SURFACES])
    len_hi = np.array([tp.list_length[s][1] for s in SURFACES])
    mean_len = float(surface_mix @ ((len_lo + len_hi) / 2))
    day_mult = np.array([tp.day_multiplier[k] for k in kinds])
    day_mult *= np.where(days.weekend, tp.weekend_multiplier, 1.0)
    exposure = sum(day_mult[d] * users.activity[users.first_day <= d].sum() for d in range(days.n))
    # ~4% of slots are repeats of a product already in the list and get dropped
    rate = users.activity * config.spec.target_impressions / (0.96 * mean_len * exposure)

    hour_p = np.array(tp.local_hour_weights) / np.sum(tp.local_hour_weights)
    gap_s = np.array([tp.position_gap_seconds[s] for s in SURFACES])
    age_days_at_start = (days.start_us[0] - products.created_us) / DAY_US
    pop_sampler = CategorySampler(products.category, n_cat)
    uniform_sampler = CategorySampler(products.category, n_cat)

    n_requests = 0
    for d in range(days.n):
        day_start = int(days.start_us[d])
        kind = int(days.kind[d])

        # sessions (one request each), ordered by time so request ids are chronological
        n_sess = rng.poisson(rate * day_mult[d] * (users.first_day <= d))
        req_user = np.repeat(np.arange(users.n), n_sess)
        n_req = len(req_user)
        local_hour = rng.choice(24, size=n_req, p=hour_p)
        local_s = local_hour * 3600.0 + rng.random(n_req) * 3600.0
        utc_s = np.mod(local_s - users.utc_offset_h[req_user] * 3600.0, 86400.0)
        order = np.argsort(utc_s, kind="stable")
        req_user, local_hour, utc_s = req_user[order], local_hour[order], utc_s[order]
        req_ts = day_start + (utc_s * SECOND_US).astype(np.int64)
        evening = (local_hour >= cp.evening_hours[0]) & (local_hour <= cp.evening_hours[1])
        surface, length, query_cat = session_shape(rng, config, users, req_user)

        view = catalogue_view(
            config, products, panels.is_live[:, d], age_days_at_start + d, d, pop_sampler, uniform_sampler
        )
        slot_req, product = draw_candidates(rng, config, view, users, req_user, surface, length, query_cat)
        slot_user = req_user[slot_req]
        slot_surface = surface[slot_req]
        category = products.category[product]
        affinity = taste_affinity(config, users, slot_user, category)

        # incumbent ranking: popularity and taste, plus noise; position then confounds relevance
        score = (
            np.log(view.pop_w[product])
            + tp.recommender_taste_weight * affinity
            + rng.gumbel(0.0, tp.recommender_noise_scale, len(product))
        )
        rank = np.lexsort((-score, slot_req))
        slot_req, product, slot_user = slot_req[rank], product[rank], slot_user[rank]
        slot_surface, category, affinity = slot_surface[rank], category[rank], affinity[rank]
        position = _chunk_positions(slot_req)
        n_imp = len(product)
        jitter = rng.uniform(*tp.position_jitter, n_imp)
        offset_s = (position - 1) * gap_s[slot_surface] * jitter + rng.random(n_imp) * 0.5
        imp_ts = req_ts[slot_req] + (offset_s * SECOND_US).astype(np.int64)

        # the noise is drawn here, click then order, so history keeps its draws
        click_noise = rng.normal(0.0, cp.noise_sd, n_imp)
        order_noise = rng.normal(0.0, op.noise_sd, n_imp)
        state = DayState.of(panels, d, kind)
        truth = true_probabilities(
            config,
            users,
            merchants,
            products,
            state,
            slot_user,
            product,
            slot_surface,
            evening[slot_req],
            click_noise,
            order_noise,
        )
        p_click = truth.examination(position, slot_surface) * truth.attraction
        p_order, expected_value = truth.p_order, truth.expected_value
        price, multi_buy = truth.price, truth.multi_buy
        out = draw_outcomes(rng, config, imp_ts, p_click, p_order, multi_buy)
        clicked, clk_ts, ordered, ord_ts, quantity = out.clicked, out.clk_ts, out.ordered, out.ord_ts, out.quantity
        ord_imp = clicked[ordered]

        yield {
            "imp_ts": imp_ts,
            "imp_request": (slot_req + n_requests).astype(np.int64),
            "imp_user": slot_user.astype(np.int32),
            "imp_product": product.astype(np.int32),
            "imp_surface": slot_surface.astype(np.int8),
            "imp_position": position,
            "p_click": p_click,
            "p_order": p_order,
            "expected_order_value": expected_value,
            "clk_imp": clicked,
            "clk_ts": clk_ts,
            "ord_clk": ordered,
            "ord_ts": ord_ts,
            "ord_quantity": quantity.astype(np.int32),
            "ord_unit_price": price[ord_imp],
        }
        n_requests += n_req
        if progress is not None:
            progress(f"simulating {days.dates[d].isoformat()}", d + 1, days.n)
