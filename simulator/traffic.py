"""Requests, the incumbent recommender's candidate lists, and the user's clicks and orders.

One vectorised pass per simulated day: sessions -> slots -> candidates -> ranking -> true
probabilities -> sampled clicks and orders. The true probabilities are kept for the oracle. Days are
yielded one at a time (`simulator.ordering` numbers them chronologically), so memory holds one day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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

    surface_cdf = np.cumsum(users.surface_pref, axis=1)
    taste_cdf = np.cumsum(users.taste, axis=1)
    mix_cdf = np.cumsum(np.array([tp.candidate_mix[s] for s in SURFACES]), axis=1)
    mix_cdf[SEARCH] = 1.0  # unused: search slots are overwritten with QUERY
    hour_p = np.array(tp.local_hour_weights) / np.sum(tp.local_hour_weights)
    gap_s = np.array([tp.position_gap_seconds[s] for s in SURFACES])
    eta = np.array([cp.examination_eta[s] for s in SURFACES])
    surface_offset = np.array([cp.surface_offset[s] for s in SURFACES])
    click_tier = np.array([cp.tier_weight[t] for t in TIERS])
    order_tier = np.array([op.tier_weight[t] for t in TIERS])
    click_campaign = np.array([cp.campaign_weight[k] for k in DAY_KINDS])
    order_campaign = np.array([op.campaign_weight[k] for k in DAY_KINDS])
    cat_median = np.array([c.median_price for c in CATALOG])
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
        surface = sample_rows(rng, surface_cdf[req_user])
        length = rng.integers(len_lo[surface], len_hi[surface] + 1)
        query_cat = np.where(
            rng.random(n_req) < tp.search_query_from_taste,
            sample_rows(rng, taste_cdf[req_user]),
            rng.integers(0, n_cat, n_req),
        )

        # slots and their candidate source
        slot_req = np.repeat(np.arange(n_req), length)
        n_slots = len(slot_req)
        slot_user = req_user[slot_req]
        slot_surface = surface[slot_req]
        source = sample_rows(rng, mix_cdf[slot_surface])
        source[slot_surface == SEARCH] = QUERY
        slot_cat = sample_rows(rng, taste_cdf[slot_user])
        slot_cat = np.where(source == QUERY, query_cat[slot_req], slot_cat)

        # the incumbent recommender's view of the catalogue today
        available = products.first_day <= d
        age = age_days_at_start + d
        ramp = np.clip(age / config.params.products.popularity_ramp_days, 0.05, 1.0)
        pop_w = products.popularity * ramp * available
        pop_sampler.fit(pop_w)
        uniform_sampler.fit(available.astype(np.float64))
        live_w = pop_w * panels.is_live[products.merchant, d]
        if live_w.sum() == 0:
            source[source == LIVE] = POPULAR
        empty_cat = ~pop_sampler.nonempty[slot_cat] & ((source == TASTE) | (source == QUERY))
        source[empty_cat] = POPULAR

        u = _uniform(rng, n_slots)
        product = np.zeros(n_slots, dtype=np.int64)
        m = source == TASTE
        product[m] = pop_sampler.sample(slot_cat[m], u[m])
        m = source == QUERY
        by_pop = rng.random(n_slots) < tp.search_popularity_weighted
        product[m & by_pop] = pop_sampler.sample(slot_cat[m & by_pop], u[m & by_pop])
        product[m & ~by_pop] = uniform_sampler.sample(slot_cat[m & ~by_pop], u[m & ~by_pop])
        m = source == POPULAR
        product[m] = weighted_sample(pop_w, u[m])
        m = source == RANDOM
        avail_idx = np.flatnonzero(available)
        product[m] = avail_idx[(u[m] * len(avail_idx)).astype(np.int64)]
        m = source == LIVE
        if m.any():
            product[m] = weighted_sample(live_w, u[m])

        # a product appears at most once per list
        _, first = np.unique(slot_req * products.n + product, return_index=True)
        keep = np.sort(first)
        slot_req, product, slot_user = slot_req[keep], product[keep], slot_user[keep]
        slot_surface = slot_surface[keep]
        category = products.category[product]
        affinity = np.clip(np.log(np.maximum(n_cat * users.taste[slot_user, category], 1e-12)), *cp.affinity_clip)

        # incumbent ranking: popularity and taste, plus noise; position then confounds relevance
        score = (
            np.log(pop_w[product])
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

        # true click probability: examination x attractiveness
        merchant = products.merchant[product]
        price = panels.price[product, d]
        discount = panels.discount[product, d]
        rating = panels.rating[merchant, d]
        live = panels.is_live[merchant, d] & (slot_surface == LIVE_STREAM)
        tier = merchants.tier[merchant]
        sens = users.price_sensitivity[slot_user]
        price_rel = np.log(price / cat_median[category])
        quality = products.quality[product]
        click_logit = (
            cp.intercept
            + surface_offset[slot_surface]
            + users.click_bias[slot_user]
            + cp.affinity_weight * affinity
            + cp.quality_weight * quality
            - cp.price_weight * sens * price_rel
            + cp.discount_weight * discount
            + cp.live_weight * live
            + click_campaign[kind]
            + cp.rating_weight * (rating - 4.5)
            + click_tier[tier]
            + cp.evening_weight * evening[slot_req]
            + rng.normal(0.0, cp.noise_sd, n_imp)
        )
        p_click = position ** (-eta[slot_surface]) * sigmoid(click_logit)

        order_logit = (
            op.intercept
            + users.buy_bias[slot_user]
            + op.affinity_weight * affinity
            + op.quality_weight * quality
            - op.price_weight * sens * price_rel
            + op.discount_weight * discount
            + op.rating_weight * (rating - 4.5)
            + order_campaign[kind]
            + op.live_weight * live
            + order_tier[tier]
            + op.ios_weight * (users.device[slot_user] == 1)
            + rng.normal(0.0, op.noise_sd, n_imp)
        )
        p_order = sigmoid(order_logit)
        mega = op.quantity_mega_multiplier if DAY_KINDS[kind] == "mega" else 1.0
        multi_buy = mega * op.quantity_base / (1.0 + price / op.quantity_price_scale)
        expected_value = price * (1.0 + 2.0 * multi_buy)

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
