"""Users, merchants and products with their latent traits, and the daily price and merchant panels.

Latent traits (taste, price sensitivity, quality, click and buy propensities) live only in these
arrays: the writer never sees them, so a model can learn them only from behaviour over time.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from simulator.campaigns import DAY_US, Days
from simulator.config import CATALOG, CAUSES, COUNTRIES, SURFACES, TIERS, SimConfig

SECOND_US = 1_000_000


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per stream, so changing one component never reshuffles another."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(stream.encode())]))


def day_index_after(ts_us: np.ndarray, days: Days) -> np.ndarray:
    """First simulated day an entity created at `ts_us` takes part in: the day after it appears."""
    idx = (ts_us - days.start_us[0]) // DAY_US + 1
    return np.clip(idx, 0, None).astype(np.int32)


def _lognormal_unit_mean(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    return rng.lognormal(-0.5 * sigma**2, sigma, size)


def _shares(mapping: dict[str, float], keys: tuple[str, ...]) -> np.ndarray:
    p = np.array([mapping[k] for k in keys], dtype=np.float64)
    return p / p.sum()


@dataclass(frozen=True)
class Users:
    country: np.ndarray  # int8 index into COUNTRIES
    device: np.ndarray  # int8 index into DEVICES
    signup_us: np.ndarray
    first_day: np.ndarray
    utc_offset_h: np.ndarray
    taste: np.ndarray  # latent (n, n_categories), rows sum to 1
    price_sensitivity: np.ndarray  # latent
    activity: np.ndarray  # latent, mean 1
    click_bias: np.ndarray  # latent
    buy_bias: np.ndarray  # latent
    surface_pref: np.ndarray  # (n, n_surfaces)

    @property
    def n(self) -> int:
        return len(self.country)


@dataclass(frozen=True)
class Merchants:
    country: np.ndarray
    tier: np.ndarray  # int8 index into TIERS
    main_category: np.ndarray
    joined_us: np.ndarray
    first_day: np.ndarray
    is_new: np.ndarray  # joined during the period
    quality: np.ndarray  # latent
    base_rating: np.ndarray
    live_prob: np.ndarray

    @property
    def n(self) -> int:
        return len(self.tier)


@dataclass(frozen=True)
class Products:
    merchant: np.ndarray
    category: np.ndarray  # L1 index into CATALOG
    subcategory: np.ndarray  # global L2 index into `subcategory_names()`
    base_price: np.ndarray
    created_us: np.ndarray
    first_day: np.ndarray
    quality: np.ndarray  # latent
    popularity: np.ndarray  # the incumbent recommender's prior
    promo_propensity: np.ndarray

    @property
    def n(self) -> int:
        return len(self.merchant)


@dataclass(frozen=True)
class PlantedCause:
    merchant: int
    cause: str
    change_day: int
    magnitude: float


@dataclass(frozen=True)
class Panels:
    """Day-level state, (entity, day) arrays; rows before an entity's first day exist but are never used."""

    list_price: np.ndarray
    discount: np.ndarray
    price: np.ndarray  # shown price = list price x (1 - discount), rounded to cents
    rating: np.ndarray
    is_live: np.ndarray


def subcategory_names() -> list[str]:
    return [sub for cat in CATALOG for sub in cat.subcategories]


def make_users(config: SimConfig, days: Days, rng: np.random.Generator) -> Users:
    p = config.params.users
    n = config.spec.n_users
    country = rng.choice(len(COUNTRIES), size=n, p=_shares(p.country_shares, COUNTRIES)).astype(np.int8)
    ios_p = np.array([p.ios_share[c] for c in COUNTRIES])[country]
    u = rng.random(n)
    device = np.where(u < p.web_share, 2, np.where(u < p.web_share + (1 - p.web_share) * ios_p, 1, 0))

    cat_shares = np.array([c.share for c in CATALOG])
    taste = rng.dirichlet(p.taste_concentration * cat_shares / cat_shares.sum(), size=n)
    country_sens = np.array([p.price_sensitivity_by_country[c] for c in COUNTRIES])[country]
    price_sensitivity = country_sens * _lognormal_unit_mean(rng, p.price_sensitivity_sigma, n)

    start_us = int(days.start_us[0])
    is_new = np.zeros(n, dtype=bool)
    is_new[rng.choice(n, size=round(p.new_user_share * n), replace=False)] = True
    age_us = np.minimum(rng.exponential(p.signup_age_mean_days, n), 6 * 365) * DAY_US
    signup = start_us - age_us.astype(np.int64)
    in_period = start_us + (rng.random(n) * p.new_user_window * days.n * DAY_US).astype(np.int64)
    signup = np.where(is_new, in_period, signup)
    signup -= signup % SECOND_US

    offsets = np.array([p.utc_offset_hours[c] for c in COUNTRIES], dtype=np.int8)[country]
    surface_mix = _shares(config.params.traffic.surface_mix, SURFACES)
    return Users(
        country=country,
        device=device.astype(np.int8),
        signup_us=signup,
        first_day=day_index_after(signup, days),
        utc_offset_h=offsets,
        taste=taste,
        price_sensitivity=price_sensitivity,
        activity=_lognormal_unit_mean(rng, p.activity_sigma, n),
        click_bias=rng.normal(0.0, p.click_bias_sigma, n),
        buy_bias=rng.normal(0.0, p.buy_bias_sigma, n),
        surface_pref=rng.dirichlet(p.surface_pref_concentration * surface_mix, size=n),
    )


def make_merchants(config: SimConfig, days: Days, rng: np.random.Generator) -> Merchants:
    p = config.params.merchants
    n = config.spec.n_merchants
    tier = rng.choice(len(TIERS), size=n, p=_shares(p.tier_shares, TIERS)).astype(np.int8)
    cat_shares = np.array([c.share for c in CATALOG])
    main_category = rng.choice(len(CATALOG), size=n, p=cat_shares / cat_shares.sum())
    country = rng.choice(len(COUNTRIES), size=n, p=_shares(config.params.users.country_shares, COUNTRIES)).astype(
        np.int8
    )

    start_us = int(days.start_us[0])
    is_new = np.zeros(n, dtype=bool)
    is_new[rng.choice(n, size=round(p.new_merchant_share * n), replace=False)] = True
    age_days = np.minimum(rng.exponential(p.joined_age_mean_days, n), 8 * 365)
    joined = start_us - (age_days * DAY_US).astype(np.int64)
    window_us = p.new_merchant_join_window * days.n * DAY_US
    joined = np.where(is_new, start_us + (rng.random(n) * window_us).astype(np.int64), joined)
    joined -= joined % SECOND_US

    tier_quality = np.array([config.params.products.quality_by_tier[t] for t in TIERS])[tier]
    rating_mean = np.array([p.rating_mean_by_tier[t] for t in TIERS])[tier]
    lives = rng.random(n) < np.array([p.live_share_by_tier[t] for t in TIERS])[tier]
    live_prob = np.where(lives, rng.uniform(*p.live_prob_range, n), 0.0)
    return Merchants(
        country=country,
        tier=tier,
        main_category=main_category,
        joined_us=joined,
        first_day=day_index_after(joined, days),
        is_new=is_new,
        quality=rng.normal(0.0, p.quality_sd, n) + tier_quality,
        base_rating=np.clip(rng.normal(rating_mean, p.rating_sd), *p.base_rating_clip),
        live_prob=live_prob,
    )


def make_products(config: SimConfig, days: Days, merchants: Merchants, rng: np.random.Generator) -> Products:
    p = config.params.products
    mp = config.params.merchants
    n = config.spec.n_products
    size = _lognormal_unit_mean(rng, mp.size_sigma, merchants.n)
    size *= np.array([mp.size_by_tier[t] for t in TIERS])[merchants.tier]
    # every merchant sells at least one product; the rest follows a heavy-tailed catalogue size
    merchant = np.concatenate(
        [rng.permutation(merchants.n), rng.choice(merchants.n, size=n - merchants.n, p=size / size.sum())]
    )

    cat_shares = np.array([c.share for c in CATALOG])
    off_main = rng.choice(len(CATALOG), size=n, p=cat_shares / cat_shares.sum())
    in_main = rng.random(n) < p.main_category_adherence
    category = np.where(in_main, merchants.main_category[merchant], off_main)
    n_sub = np.array([len(c.subcategories) for c in CATALOG])
    sub_offset = np.concatenate([[0], np.cumsum(n_sub)[:-1]])
    subcategory = sub_offset[category] + (rng.random(n) * n_sub[category]).astype(np.int64)

    median = np.array([c.median_price for c in CATALOG])[category]
    base_price = np.maximum(np.round(median * rng.lognormal(0.0, p.price_sigma, n), 2), p.min_price)

    start_us = int(days.start_us[0])
    m_joined = merchants.joined_us[merchant]
    backfill = m_joined + (rng.random(n) * (start_us - m_joined)).astype(np.int64)
    listed_in_period = start_us + (rng.random(n) * p.new_product_window * days.n * DAY_US).astype(np.int64)
    created = np.where(rng.random(n) < p.new_product_share, listed_in_period, backfill)
    after_join = m_joined + (rng.random(n) * p.new_merchant_listing_days * DAY_US).astype(np.int64)
    created = np.where(merchants.is_new[merchant], after_join, created)
    created -= created % SECOND_US

    tier_quality = np.array([p.quality_by_tier[t] for t in TIERS])[merchants.tier[merchant]]
    quality = rng.normal(0.0, p.quality_sd, n) + merchants.quality[merchant] + tier_quality
    popularity = np.exp(p.popularity_quality_weight * quality + rng.normal(0.0, p.popularity_noise_sd, n))
    return Products(
        merchant=merchant,
        category=category,
        subcategory=subcategory,
        base_price=base_price,
        created_us=created,
        first_day=day_index_after(created, days),
        quality=quality,
        popularity=popularity,
        promo_propensity=rng.beta(*p.promo_propensity_beta, n),
    )


def plant_causes(
    config: SimConfig, days: Days, merchants: Merchants, products: Products, rng: np.random.Generator
) -> list[PlantedCause]:
    """Pick a few established merchants and give each one cause of change in the second half of the period."""
    pp = config.params.plants
    counts = np.bincount(products.merchant, minlength=merchants.n)
    established = ~merchants.is_new & (counts >= pp.min_products)
    pools = {
        "price_increase": established,
        "rating_drop": established & (merchants.base_rating >= 3.8),
        "started_live": established & (merchants.live_prob == 0.0),
    }
    taken = np.zeros(merchants.n, dtype=bool)
    planted: list[PlantedCause] = []
    for i in range(config.spec.n_planted):
        cause = CAUSES[i % len(CAUSES)]
        pool = np.flatnonzero(pools[cause] & ~taken)
        if len(pool) == 0:
            continue
        # favour bigger catalogues so the change is visible in the merchant's traffic
        weights = counts[pool] / counts[pool].sum()
        merchant = int(rng.choice(pool, p=weights))
        taken[merchant] = True
        change_day = int(rng.integers(days.n // 2, max(days.n // 2 + 1, days.n - 3)))
        if cause == "price_increase":
            magnitude = float(np.round(rng.uniform(*pp.price_increase), 3))
        elif cause == "rating_drop":
            magnitude = float(np.round(rng.uniform(*pp.rating_drop), 2))
        else:
            magnitude = 1.0  # daily live probability after the change (0 before)
        planted.append(PlantedCause(merchant, cause, change_day, magnitude))
    return planted


def make_panels(
    config: SimConfig,
    days: Days,
    merchants: Merchants,
    products: Products,
    planted: list[PlantedCause],
    rng: np.random.Generator,
) -> Panels:
    p = config.params.products
    mp = config.params.merchants
    n_p, n_d = products.n, days.n
    kinds = days.kind_names()

    drift = np.empty((n_p, n_d))
    drift[:, 0] = rng.normal(0.0, p.price_drift_sigma / np.sqrt(1 - p.price_drift_phi**2), n_p)
    for d in range(1, n_d):
        drift[:, d] = p.price_drift_phi * drift[:, d - 1] + rng.normal(0.0, p.price_drift_sigma, n_p)
    list_price = products.base_price[:, None] * np.exp(drift)

    rating: np.ndarray = np.empty((merchants.n, n_d))
    sd0 = mp.rating_drift_sigma / np.sqrt(1 - mp.rating_drift_phi**2)
    dev = rng.normal(0.0, sd0, merchants.n)
    for d in range(n_d):
        rating[:, d] = merchants.base_rating + dev
        dev = mp.rating_drift_phi * dev + rng.normal(0.0, mp.rating_drift_sigma, merchants.n)

    live_mult = np.array([mp.live_prob_mega_multiplier if k == "mega" else 1.0 for k in kinds])
    is_live = rng.random((merchants.n, n_d)) < np.minimum(merchants.live_prob[:, None] * live_mult, 1.0)

    for plant in planted:
        after = slice(plant.change_day, n_d)
        if plant.cause == "price_increase":
            list_price[products.merchant == plant.merchant, after] *= 1.0 + plant.magnitude
        elif plant.cause == "rating_drop":
            rating[plant.merchant, after] -= plant.magnitude
        else:
            is_live[plant.merchant, after] = True
    rating = np.round(np.clip(rating, 1.0, 5.0), 2)

    promo_mult = np.array([p.promo_multiplier[k] for k in kinds])
    on_promo = rng.random((n_p, n_d)) < np.minimum(products.promo_propensity[:, None] * promo_mult, 0.95)
    a = np.array([p.discount_beta[k][0] for k in kinds])
    b = np.array([p.discount_beta[k][1] for k in kinds])
    depth = rng.beta(np.broadcast_to(a, (n_p, n_d)), np.broadcast_to(b, (n_p, n_d)))
    discount = np.where(on_promo, np.clip(np.round(depth, 2), 0.01, 0.9), 0.0)
    price = np.maximum(np.round(list_price * (1.0 - discount), 2), p.min_price)
    return Panels(list_price=list_price, discount=discount, price=price, rating=rating, is_live=is_live)
