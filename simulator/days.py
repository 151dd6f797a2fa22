"""The simulated days: sessions of several pages, generated page step by page step, one day at a time.

Per day: sessions (who, when) -> their plan (pages, intent) -> for k = 1, 2, ...: every session's page k at
once (surface, candidates, ranking, true probabilities with the session terms, sampled clicks and orders),
then the sessions' interest updated from the clicks, then page k + 1 a viewing time and a pause later. The
true probabilities are kept for the oracle. Days are yielded one at a time (`simulator.ordering` numbers
them chronologically), so memory holds one day; the draws follow a fixed order, so a seed gives one output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulator.campaigns import DAY_US, Days
from simulator.config import CATALOG, SURFACES, SimConfig
from simulator.entities import SECOND_US, Merchants, Panels, Products, Users
from simulator.sessions import add_clicks, draw_plan, mean_pages, page_gap_us, session_terms
from simulator.traffic import (
    CatalogueView,
    CategorySampler,
    DayEvents,
    DayState,
    ProgressFn,
    catalogue_view,
    chunk_positions,
    draw_candidates,
    draw_outcomes,
    sample_rows,
    session_shape,
    taste_affinity,
    true_probabilities,
)


@dataclass(frozen=True)
class DayContext:
    """What every page step of one day shares."""

    config: SimConfig
    users: Users
    merchants: Merchants
    products: Products
    view: CatalogueView
    state: DayState
    day_start: int


def local_hours(users: Users, ts_us: np.ndarray, user: np.ndarray) -> np.ndarray:
    """Each request's local hour (0..23) at its user's UTC offset, as live mode computes it."""
    utc_h = (ts_us % DAY_US) / (3600 * SECOND_US)
    return np.floor(np.mod(utc_h + users.utc_offset_h[user], 24.0)).astype(np.int64)


def page_step(
    rng: np.random.Generator,
    ctx: DayContext,
    req_user: np.ndarray,
    req_ts: np.ndarray,
    intent: np.ndarray,
    interest: np.ndarray,
) -> tuple[DayEvents, np.ndarray]:
    """One page of every session in `req_user` (one request each): its impressions and outcomes, and each
    request's viewing time in seconds. `intent`, `interest`: per request, its session's (interest not updated)."""
    config, users, products, view = ctx.config, ctx.users, ctx.products, ctx.view
    tp, cp, op = config.params.traffic, config.params.clicks, config.params.orders
    gap_s = np.array([tp.position_gap_seconds[s] for s in SURFACES])
    hour = local_hours(users, req_ts, req_user)
    evening = (hour >= cp.evening_hours[0]) & (hour <= cp.evening_hours[1])
    surface, length, query_cat = session_shape(rng, config, users, req_user, intent)
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
    slot_surface, category = slot_surface[rank], category[rank]
    position = chunk_positions(slot_req)
    n_imp = len(product)
    jitter = rng.uniform(*tp.position_jitter, n_imp)
    offset_s = (position - 1) * gap_s[slot_surface] * jitter + rng.random(n_imp) * 0.5
    imp_ts = req_ts[slot_req] + (offset_s * SECOND_US).astype(np.int64)

    # the noise is drawn here, click then order, so history keeps its draws
    click_noise = rng.normal(0.0, cp.noise_sd, n_imp)
    order_noise = rng.normal(0.0, op.noise_sd, n_imp)
    terms = session_terms(intent, interest, slot_req, category)
    truth = true_probabilities(
        config,
        users,
        ctx.merchants,
        products,
        ctx.state,
        slot_user,
        product,
        slot_surface,
        evening[slot_req],
        click_noise,
        order_noise,
        terms.intent_match,
        terms.session_interest,
    )
    p_click = truth.examination(position, slot_surface) * truth.attraction
    out = draw_outcomes(rng, config, imp_ts, p_click, truth.p_order, truth.multi_buy)
    viewed_s = np.zeros(len(req_user))
    np.maximum.at(viewed_s, slot_req, offset_s)
    page = {
        "imp_ts": imp_ts,
        "imp_request": slot_req.astype(np.int64),
        "imp_user": slot_user.astype(np.int32),
        "imp_product": product.astype(np.int32),
        "imp_surface": slot_surface.astype(np.int8),
        "imp_position": position,
        "imp_intent": intent[slot_req].astype(np.int8),
        "imp_intent_match": terms.intent_match,
        "imp_interest": terms.session_interest,
        "imp_category": category,
        "p_click": p_click,
        "p_order": truth.p_order,
        "expected_order_value": truth.expected_value,
        "clk_imp": out.clicked,
        "clk_ts": out.clk_ts,
        "ord_clk": out.ordered,
        "ord_ts": out.ord_ts,
        "ord_quantity": out.quantity,
        "ord_unit_price": truth.price[out.clicked[out.ordered]],
    }
    return page, viewed_s


def simulate_day(
    rng: np.random.Generator, ctx: DayContext, sess_user: np.ndarray, start_ts: np.ndarray
) -> tuple[DayEvents, np.ndarray]:
    """Sessions `sess_user` starting at `start_ts`, page step by page step: every session's page k at once,
    outcomes drawn, the sessions' interest updated, then page k + 1. Returns the day's events (`imp_request`
    and `imp_session` day-local) and each request's timestamp."""
    config = ctx.config
    n_sess = len(sess_user)
    pages, intent = draw_plan(rng, config, sample_rows(rng, np.cumsum(ctx.users.taste[sess_user], axis=1)))
    interest = np.zeros((n_sess, len(CATALOG)), dtype=np.int32)
    page_ts = start_ts.copy()
    steps: list[DayEvents] = []
    for k in range(1, int(pages.max(initial=0)) + 1):
        sess = np.flatnonzero(pages >= k)
        req_ts = page_ts[sess]
        step, viewed_s = page_step(rng, ctx, sess_user[sess], req_ts, intent[sess], interest[sess])
        clicked = step["clk_imp"]
        add_clicks(interest, sess[step["imp_request"][clicked]], step["imp_category"][clicked])
        page_ts[sess] = req_ts + page_gap_us(rng, config, viewed_s)
        step["imp_session"] = sess[step["imp_request"]].astype(np.int64)
        step["imp_page"] = np.full(len(step["imp_ts"]), k, dtype=np.int8)
        step["req_ts"] = req_ts
        steps.append(step)
    return _concat_steps(steps)


def _concat_steps(steps: list[DayEvents]) -> tuple[DayEvents, np.ndarray]:
    """One day's events from its page steps; requests renumbered in time order, row references shifted."""
    req_ts = np.concatenate([s["req_ts"] for s in steps]) if steps else np.zeros(0, dtype=np.int64)
    by_time = np.argsort(req_ts, kind="stable")
    number = np.empty(len(req_ts), dtype=np.int64)
    number[by_time] = np.arange(len(req_ts))
    n_req = np.cumsum([0] + [len(s["req_ts"]) for s in steps])
    n_imp = np.cumsum([0] + [len(s["imp_ts"]) for s in steps])
    n_clk = np.cumsum([0] + [len(s["clk_ts"]) for s in steps])
    day: DayEvents = {}
    keys = [k for k in (steps[0] if steps else {}) if k not in ("req_ts", "imp_category")]
    for key in keys:
        if key == "imp_request":
            parts = [number[s[key] + n_req[i]] for i, s in enumerate(steps)]
        elif key == "clk_imp":
            parts = [s[key] + n_imp[i] for i, s in enumerate(steps)]
        elif key == "ord_clk":
            parts = [s[key] + n_clk[i] for i, s in enumerate(steps)]
        else:
            parts = [s[key] for s in steps]
        day[key] = np.concatenate(parts)
    return day, req_ts[by_time]


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
    """Each day's events in generation order; row references (`clk_imp`, `ord_clk`) are day-local, request and
    session numbers global."""
    tp = config.params.traffic
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
    # ~4% of slots are repeats of a product already in the list and get dropped; a session has several pages
    rate = users.activity * config.spec.target_impressions / (0.96 * mean_len * mean_pages(config) * exposure)

    hour_p = np.array(tp.local_hour_weights) / np.sum(tp.local_hour_weights)
    age_days_at_start = (days.start_us[0] - products.created_us) / DAY_US
    pop_sampler = CategorySampler(products.category, n_cat)
    uniform_sampler = CategorySampler(products.category, n_cat)

    n_requests = 0
    n_sessions = 0
    for d in range(days.n):
        day_start = int(days.start_us[d])

        # sessions, ordered by start time so session and request ids are chronological
        n_sess = rng.poisson(rate * day_mult[d] * (users.first_day <= d))
        sess_user = np.repeat(np.arange(users.n), n_sess)
        n_new = len(sess_user)
        local_hour = rng.choice(24, size=n_new, p=hour_p)
        local_s = local_hour * 3600.0 + rng.random(n_new) * 3600.0
        utc_s = np.mod(local_s - users.utc_offset_h[sess_user] * 3600.0, 86400.0)
        order = np.argsort(utc_s, kind="stable")
        sess_user, utc_s = sess_user[order], utc_s[order]
        start_ts = day_start + (utc_s * SECOND_US).astype(np.int64)

        view = catalogue_view(
            config, products, panels.is_live[:, d], age_days_at_start + d, d, pop_sampler, uniform_sampler
        )
        ctx = DayContext(config, users, merchants, products, view, DayState.of(panels, d, int(days.kind[d])), day_start)
        day, req_ts = simulate_day(rng, ctx, sess_user, start_ts)
        if "imp_request" not in day:  # a day without a single session
            day = _empty_day()
        day["imp_request"] = day["imp_request"] + n_requests
        day["imp_session"] = day["imp_session"] + n_sessions
        yield day
        n_requests += len(req_ts)
        n_sessions += n_new
        if progress is not None:
            progress(f"simulating {days.dates[d].isoformat()}", d + 1, days.n)


def _empty_day() -> DayEvents:
    i64, i32, f64 = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0)
    return {
        "imp_ts": i64,
        "imp_request": i64,
        "imp_user": i32,
        "imp_product": i32,
        "imp_surface": np.zeros(0, dtype=np.int8),
        "imp_position": i32,
        "imp_intent": np.zeros(0, dtype=np.int8),
        "imp_intent_match": np.zeros(0, dtype=bool),
        "imp_interest": i32,
        "imp_session": i64,
        "imp_page": np.zeros(0, dtype=np.int8),
        "p_click": f64,
        "p_order": f64,
        "expected_order_value": f64,
        "clk_imp": i64,
        "clk_ts": i64,
        "ord_clk": i64,
        "ord_ts": i64,
        "ord_quantity": i32,
        "ord_unit_price": f64,
    }
