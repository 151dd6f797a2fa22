"""Merchant funnel panels of a larger marketplace, drawn from the same generative model as the events.

At `small` the event-level marketplace makes ~35 orders a day for 400 merchants: most merchant-weeks have no
order, and a merchant's funnel cannot be told from noise. Simulating impressions one by one for a marketplace
large enough is beyond this machine, and the ranking models do not need it. A merchant-analytics warehouse does
not hold impressions either: it holds aggregated counts per product, surface and day. So this module draws those
counts directly, for the same world (users, merchants, products, the daily price / discount / rating / live
panels and the planted causes), with the same true click and order model (`traffic.true_probabilities`):

1. **Exposure.** Expected impressions of product p on surface s on day d = the marketplace's slots on (s, d)
   (sessions x list length, as `traffic.simulate_days` sizes them) x p's expected share of the incumbent
   recommender's slots (its candidate mix: taste, popular, random, live, query, each with the weights the
   event simulator samples from) x the panel's `volume` (a marketplace this many times busier) x the
   merchant's `reach`.
2. **Reach.** A real marketplace's merchant volume has a heavy head: `reach ~ LogNormal(0, reach_sigma)` per
   merchant (brand, followers, ad budget: what the event-level world leaves out). The planted-cause merchants
   are drawn from the head: their reach is at least the `planted_reach_quantile` of the reach distribution,
   so each has enough orders in each compared period for its funnel moves to be told from noise.
3. **Rates.** The cell's CTR and CVR are the means of the true model over `audience_draws` pseudo-impressions:
   users drawn by activity x surface preference x (taste for the product's category, for the taste-driven
   share of the surface's slots), a position uniform in a list of the surface's length, the per-impression
   noise terms. The audience is drawn once per cell for the period, so the rates move from day to day only
   with the day's state (price, discount, rating, live, campaign day), as the mean over a large audience does.
   Clicks and orders are then binomial draws; quantity is `1 + Binomial(2, pi)` per order as in the events,
   so GMV = sum of quantity x the day's shown price.

Nothing here touches the event-level random streams (its own `rng_for(seed, "merchant_panel")`), so raw/ and
oracle/ are byte-identical with or without it. The panel is written to `$SHOPRANK_HOME/merchant_panels/`
(`product_funnel_daily.parquet` and `panel.json`), which the merchant diagnosis reads (docs/simulator.md,
"Merchant funnel panels").
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from simulator.campaigns import DAY_KINDS, Days
from simulator.config import CATALOG, SURFACES, SimConfig
from simulator.entities import Merchants, Panels, PlantedCause, Products, Users, rng_for
from simulator.traffic import SEARCH, DayState, true_probabilities

PANEL_DIR = "merchant_panels"
PANEL_FILE = "product_funnel_daily.parquet"
RATE_CHUNK = 50_000  # cells whose rates are computed at once (x audience_draws pseudo-impressions)
TASTE_SRC, POPULAR_SRC, RANDOM_SRC, LIVE_SRC = range(4)


class PanelParams(BaseModel):
    """How much larger the panel's marketplace is than the event-level one, and how merchant volume spreads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    volume: float = 250.0  # impressions per product-surface-day, relative to the event-level marketplace
    reach_sigma: float = 1.3  # lognormal spread of merchant reach: the heavy head
    planted_reach_quantile: float = 0.85  # planted merchants are drawn from the head...
    # ...and expect at least this many orders in the week before the change: a 20% move of a merchant's
    # conversion is then ~3 standard errors of the day-to-day noise of a week against a week
    planted_min_orders: float = 700.0
    audience_draws: int = 16  # pseudo-impressions per cell to average the true rates over


# Busy enough that a mid-sized merchant's week holds tens of orders (the event-level one: 0-2 at small).
PANEL_VOLUME: dict[str, float] = {"tiny": 400.0, "small": 250.0, "medium": 100.0, "large": 50.0}


def panel_params(config: SimConfig) -> PanelParams:
    return PanelParams(volume=PANEL_VOLUME[config.scale])


@dataclass(frozen=True)
class World:
    days: Days
    users: Users
    merchants: Merchants
    products: Products
    planted: list[PlantedCause]
    panels: Panels


def merchant_reach(
    params: PanelParams, merchants: Merchants, planted: list[PlantedCause], rng: np.random.Generator
) -> np.ndarray:
    reach = rng.lognormal(0.0, params.reach_sigma, merchants.n)
    floor = float(np.exp(params.reach_sigma * _normal_quantile(params.planted_reach_quantile)))
    for plant in planted:
        reach[plant.merchant] = max(reach[plant.merchant], floor * (1.0 + rng.random()))
    return reach / reach.mean()


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def _slot_shares(
    config: SimConfig,
    world: World,
    d: int,
    taste_bar: np.ndarray,
    *,
    is_live: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    days_ahead: int = 0,
) -> np.ndarray:
    """(products, surfaces): expected share of each surface's slots that go to each product on day d.

    The keywords are the campaign oracle's (`simulator.campaign_oracle`): a day `days_ahead` after d (products
    older by that much), with each merchant's live flag `is_live` and the recommender's prior `popularity`
    instead of the panels'; the panel itself never passes them."""
    tp = config.params.traffic
    products = world.products
    n_cat = len(CATALOG)
    age = (world.days.start_us[0] - products.created_us) / 86_400_000_000 + d + days_ahead
    available = products.first_day <= d
    ramp = np.clip(age / config.params.products.popularity_ramp_days, 0.05, 1.0)
    pop_w = (products.popularity if popularity is None else popularity) * ramp * available
    live_w = pop_w * (world.panels.is_live[:, d] if is_live is None else is_live)[products.merchant]
    cat = products.category
    pop_cat = np.bincount(cat, weights=pop_w, minlength=n_cat)
    avail_cat = np.bincount(cat, weights=available.astype(float), minlength=n_cat)
    within_pop = pop_w / np.where(pop_cat > 0, pop_cat, 1.0)[cat]
    within_uniform = available / np.where(avail_cat > 0, avail_cat, 1.0)[cat]
    popular = pop_w / pop_w.sum()
    uniform = available / available.sum()
    live = live_w / live_w.sum() if live_w.sum() > 0 else popular
    shares = np.zeros((products.n, len(SURFACES)))
    for s, name in enumerate(SURFACES):
        if s == SEARCH:
            q = tp.search_query_from_taste * taste_bar[s] + (1 - tp.search_query_from_taste) / n_cat
            pw = tp.search_popularity_weighted
            shares[:, s] = q[cat] * (pw * within_pop + (1 - pw) * within_uniform)
            continue
        mix = tp.candidate_mix[name]
        shares[:, s] = (
            mix[TASTE_SRC] * taste_bar[s][cat] * within_pop
            + mix[POPULAR_SRC] * popular
            + mix[RANDOM_SRC] * uniform
            + mix[LIVE_SRC] * live
        )
    return shares


def _taste_share(config: SimConfig) -> np.ndarray:
    """Share of each surface's slots whose product was picked for the user's taste (so the audience leans to it)."""
    tp = config.params.traffic
    out = np.array([tp.candidate_mix[s][TASTE_SRC] for s in SURFACES])
    out[SEARCH] = tp.search_query_from_taste
    return out


@dataclass(frozen=True)
class _Market:
    """Day-independent sizing of the event-level marketplace (as `traffic.simulate_days` sizes it)."""

    rate: np.ndarray  # sessions per user per unit day multiplier
    day_mult: np.ndarray
    len_lo: np.ndarray
    len_hi: np.ndarray
    evening_p: float
    taste_share: np.ndarray

    @staticmethod
    def of(config: SimConfig, world: World) -> _Market:
        tp = config.params.traffic
        users, days = world.users, world.days
        surface_mix = np.array([tp.surface_mix[s] for s in SURFACES])
        surface_mix /= surface_mix.sum()
        len_lo = np.array([tp.list_length[s][0] for s in SURFACES])
        len_hi = np.array([tp.list_length[s][1] for s in SURFACES])
        day_mult = np.array([tp.day_multiplier[k] for k in days.kind_names()])
        day_mult *= np.where(days.weekend, tp.weekend_multiplier, 1.0)
        exposure = sum(day_mult[d] * users.activity[users.first_day <= d].sum() for d in range(days.n))
        mean_len = float(surface_mix @ ((len_lo + len_hi) / 2))
        rate = users.activity * config.spec.target_impressions / (0.96 * mean_len * exposure)
        hour_w = np.array(tp.local_hour_weights)
        lo, hi = config.params.clicks.evening_hours
        return _Market(
            rate, day_mult, len_lo, len_hi, float(hour_w[lo : hi + 1].sum() / hour_w.sum()), _taste_share(config)
        )


@dataclass(frozen=True)
class _Day:
    d: int
    slot_rate: np.ndarray  # (products, surfaces): expected impressions at volume 1 and reach 1


def _day(config: SimConfig, world: World, market: _Market, d: int) -> _Day:
    users = world.users
    weight = (market.rate * market.day_mult[d] * (users.first_day <= d))[:, None] * users.surface_pref
    slots = weight.sum(axis=0) * (market.len_lo + market.len_hi) / 2 * 0.96
    taste_bar = (weight.T @ users.taste) / weight.sum(axis=0)[:, None]
    shares = _slot_shares(config, world, d, taste_bar)
    return _Day(d, shares * slots[None, :])


@dataclass(frozen=True)
class _Audience:
    """Per (product, surface) cell, the `m` pseudo-impressions its rates average over: who, at which position,
    in the evening or not, and the per-impression noise of the true model. Drawn once for the period (common
    random numbers): a cell's audience is the same every day, so its rates move from day to day only with the
    day's state (price, discount, rating, live, campaign), as the mean over a large audience would."""

    user: np.ndarray  # (products * surfaces * m,)
    position: np.ndarray
    evening: np.ndarray
    click_noise: np.ndarray
    order_noise: np.ndarray
    m: int


def _audience(config: SimConfig, world: World, market: _Market, m: int, rng: np.random.Generator) -> _Audience:
    users, products, days = world.users, world.products, world.days
    n_s = len(SURFACES)
    # sessions over the period x surface preference: who fills each surface's slots
    exposure = np.zeros(users.n)
    for d in range(days.n):
        exposure += market.day_mult[d] * (users.first_day <= d)
    weight = (market.rate * exposure)[:, None] * users.surface_pref
    taste_bar = (weight.T @ users.taste) / weight.sum(axis=0)[:, None]
    cell_product = np.repeat(np.arange(products.n), n_s)
    cell_surface = np.tile(np.arange(n_s), products.n)
    cat = products.category[cell_product]
    user = np.empty((len(cell_product), m), dtype=np.int64)
    u01 = rng.random((len(cell_product), m))
    for s in range(n_s):
        for c in range(len(CATALOG)):
            cells = np.flatnonzero((cell_surface == s) & (cat == c))
            if len(cells) == 0:
                continue
            # taste-picked slots lean to the category's fans, the rest follow the surface's audience
            ts = market.taste_share[s]
            cdf = np.cumsum(weight[:, s] * (ts * users.taste[:, c] / taste_bar[s, c] + (1 - ts)))
            user[cells] = np.minimum(np.searchsorted(cdf, u01[cells] * cdf[-1]), users.n - 1)
    n = user.size
    surface = np.repeat(cell_surface, m)
    length = rng.integers(market.len_lo[surface], market.len_hi[surface] + 1)
    return _Audience(
        user=user.ravel(),
        position=1 + (rng.random(n) * length).astype(np.int64),
        evening=rng.random(n) < market.evening_p,
        click_noise=rng.normal(0.0, config.params.clicks.noise_sd, n),
        order_noise=rng.normal(0.0, config.params.orders.noise_sd, n),
        m=m,
    )


def audience_truth(
    config: SimConfig,
    world: World,
    audience: _Audience,
    state: DayState,
    prod_idx: np.ndarray,
    surf_idx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_click at the drawn position, p_order, expected order value), one row per (product, surface) cell and one
    column per audience draw: the true model on the cell's panel audience, under the day's `state`."""
    m = audience.m
    flat = ((prod_idx * len(SURFACES) + surf_idx)[:, None] * m + np.arange(m)[None, :]).ravel()
    flat_surf = np.repeat(surf_idx, m)
    truth = true_probabilities(
        config,
        world.users,
        world.merchants,
        world.products,
        state,
        audience.user[flat],
        np.repeat(prod_idx, m),
        flat_surf,
        audience.evening[flat],
        audience.click_noise[flat],
        audience.order_noise[flat],
        click_offset=config.params.sessions.panel_click_offset,  # no session terms: their average instead
    )
    p_click = (truth.examination(audience.position[flat], flat_surf) * truth.attraction).reshape(-1, m)
    return p_click, truth.p_order.reshape(-1, m), truth.expected_value.reshape(-1, m)


def _rates(
    config: SimConfig, world: World, audience: _Audience, d: int, prod_idx: np.ndarray, surf_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(CTR, CVR) of each (product, surface) cell on day d: the true model averaged over the cell's audience,
    in chunks of cells so memory stays bounded at large (no random draw here: chunking changes nothing)."""
    if len(prod_idx) > RATE_CHUNK:
        parts = [
            _rates(config, world, audience, d, prod_idx[i : i + RATE_CHUNK], surf_idx[i : i + RATE_CHUNK])
            for i in range(0, len(prod_idx), RATE_CHUNK)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    state = DayState.of(world.panels, d, int(world.days.kind[d]))
    p_click, p_order, _ = audience_truth(config, world, audience, state, prod_idx, surf_idx)
    ctr = p_click.mean(axis=1)
    cvr = (p_click * p_order).sum(axis=1) / np.maximum(p_click.sum(axis=1), 1e-300)
    return np.clip(ctr, 0.0, 1.0), np.clip(cvr, 0.0, 1.0)


def _lift_planted(
    config: SimConfig, world: World, market: _Market, audience: _Audience, params: PanelParams, reach: np.ndarray
) -> np.ndarray:
    """Raise a planted merchant's reach until its week before the change expects `planted_min_orders` orders
    (expected, from the true rates of its own cells; no random draw, so the rest of the panel is untouched)."""
    reach = reach.copy()
    for plant in world.planted:
        own = np.flatnonzero(world.products.merchant == plant.merchant)
        expected = 0.0
        for d in range(max(0, plant.change_day - 7), plant.change_day):
            lam = params.volume * reach[plant.merchant] * _day(config, world, market, d).slot_rate[own]
            prod_idx, surf_idx = np.nonzero(lam > 0)
            if len(prod_idx) == 0:
                continue
            ctr, cvr = _rates(config, world, audience, d, own[prod_idx], surf_idx)
            expected += float((lam[prod_idx, surf_idx] * ctr * cvr).sum())
        if 0 < expected < params.planted_min_orders:
            reach[plant.merchant] *= params.planted_min_orders / expected
    return reach


def panel_days(config: SimConfig, world: World) -> Iterator[pa.Table]:
    """One table a day of product x surface funnel counts (only cells with impressions), sorted by product and
    surface: memory holds one day, whatever the scale."""
    params = panel_params(config)
    rng = rng_for(config.seed, "merchant_panel")
    op = config.params.orders
    products, days = world.products, world.days
    market = _Market.of(config, world)
    audience = _audience(config, world, market, params.audience_draws, rng)
    reach = merchant_reach(params, world.merchants, world.planted, rng)
    reach = _lift_planted(config, world, market, audience, params, reach)
    # ids and names through arrow `take`, so no Python object is made per row
    product_ids = pa.array([f"p{p + 1:06d}" for p in range(products.n)], pa.string())
    merchant_ids = pa.array([f"m{x + 1:05d}" for x in range(world.merchants.n)], pa.string())
    cat_names = pa.array([c.name for c in CATALOG], pa.string())
    surfaces = pa.array(list(SURFACES), pa.string())

    for d in range(days.n):
        day = _day(config, world, market, d)
        lam = params.volume * reach[products.merchant][:, None] * day.slot_rate
        prod_idx, surf_idx = np.nonzero(lam > 0)  # row-major: sorted by product, then surface
        n_imp = rng.poisson(lam[prod_idx, surf_idx])
        keep = n_imp > 0
        prod_idx, surf_idx, n_imp = prod_idx[keep], surf_idx[keep], n_imp[keep]
        if len(prod_idx) == 0:
            continue
        ctr, cvr = _rates(config, world, audience, d, prod_idx, surf_idx)
        clicks = rng.binomial(n_imp, ctr)
        orders = rng.binomial(clicks, cvr)
        price = world.panels.price[prod_idx, d]
        mega = op.quantity_mega_multiplier if DAY_KINDS[int(days.kind[d])] == "mega" else 1.0
        multi_buy = np.minimum(mega * op.quantity_base / (1.0 + price / op.quantity_price_scale), 1.0)
        units = orders + rng.binomial(2 * orders, multi_buy)
        merchant = products.merchant[prod_idx]
        yield pa.table(
            {
                "product_id": product_ids.take(pa.array(prod_idx)),
                "merchant_id": merchant_ids.take(pa.array(merchant)),
                "category_l1": cat_names.take(pa.array(products.category[prod_idx])),
                "main_category_l1": cat_names.take(pa.array(world.merchants.main_category[merchant])),
                "activity_date": pa.array([days.dates[d]] * len(prod_idx), pa.date32()),
                "surface": surfaces.take(pa.array(surf_idx)),
                "impressions": pa.array(n_imp, pa.int64()),
                "clicks": pa.array(clicks, pa.int64()),
                "orders": pa.array(orders, pa.int64()),
                "gmv": pa.array(np.round(units * price, 2), pa.float64()),
            }
        )


def generate_panel(config: SimConfig, world: World) -> pa.Table:
    """The whole panel as one table, sorted by day, product, surface (small scales and tests)."""
    return pa.concat_tables(list(panel_days(config, world)))


def merchant_concentration(per_gmv: np.ndarray, per_orders: np.ndarray, n_weeks: float) -> dict[str, float]:
    """GMV share of the top 1% and 10% of merchants, orders per merchant-week (mean, median), orders per day."""
    n = len(per_gmv)
    ranked = np.sort(per_gmv)[::-1]
    total = ranked.sum() or 1.0
    return {
        "top_1pct_gmv_share": float(ranked[: max(1, round(0.01 * n))].sum() / total),
        "top_10pct_gmv_share": float(ranked[: max(1, round(0.10 * n))].sum() / total),
        "orders_per_merchant_week_mean": float(per_orders.mean() / n_weeks),
        "orders_per_merchant_week_median": float(np.median(per_orders) / n_weeks),
        "orders_per_day": float(per_orders.sum() / (n_weeks * 7)),
    }


def build_world(config: SimConfig) -> World:
    """The world `generate` draws (same streams, same arrays), without simulating any event."""
    from simulator.campaigns import build_days
    from simulator.entities import make_merchants, make_panels, make_products, make_users, plant_causes

    seed = config.seed
    days = build_days(config)
    users = make_users(config, days, rng_for(seed, "users"))
    merchants = make_merchants(config, days, rng_for(seed, "merchants"))
    products = make_products(config, days, merchants, rng_for(seed, "products"))
    planted = plant_causes(config, days, merchants, products, rng_for(seed, "plants"))
    panels = make_panels(config, days, merchants, products, planted, rng_for(seed, "panels"))
    return World(days, users, merchants, products, planted, panels)


def write_panel(home: Path, config: SimConfig, world: World) -> dict[str, float]:
    """Draw the panel a day at a time into `home/merchant_panels/` (swapped in atomically); returns its
    concentration figures."""
    tmp = home / f".{PANEL_DIR}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    per_gmv, per_orders = np.zeros(world.merchants.n), np.zeros(world.merchants.n)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for table in panel_days(config, world):
            if writer is None:
                writer = pq.ParquetWriter(tmp / PANEL_FILE, table.schema, compression="zstd")
            writer.write_table(table)
            idx = pc.cast(pc.utf8_slice_codeunits(table.column("merchant_id"), 1), pa.int64()).to_numpy() - 1
            per_gmv += np.bincount(idx, weights=table.column("gmv").to_numpy(), minlength=world.merchants.n)
            per_orders += np.bincount(idx, weights=table.column("orders").to_numpy(), minlength=world.merchants.n)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    stats = merchant_concentration(per_gmv, per_orders, world.days.n / 7)
    meta = {
        "seed": config.seed,
        "scale": config.scale,
        "start_date": config.start_date.isoformat(),
        "end_date": config.end_date.isoformat(),
        "params": panel_params(config).model_dump(),
        "rows": rows,
        **stats,
    }
    (tmp / "panel.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    final = home / PANEL_DIR
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return stats
