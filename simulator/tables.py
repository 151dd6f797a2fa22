"""Dimension snapshots and daily panels as contract columns (observable fields only, never latents)."""

from __future__ import annotations

import numpy as np

from simulator.campaigns import DAY_KINDS, DAY_US, EPOCH, Days
from simulator.config import SimConfig
from simulator.entities import SECOND_US, Merchants, Panels, Products, Users

Columns = dict[str, np.ndarray]


def snapshot_us(config: SimConfig, days: Days) -> int:
    """Dimension snapshots land once, late on the last simulated day."""
    offset = config.params.landing.dimension_snapshot_offset_min * 60 * SECOND_US
    return int(days.start_us[-1] + offset)


def users_columns(users: Users, at_us: int) -> Columns:
    return {
        "user_id": np.arange(1, users.n + 1),
        "country": users.country,
        "device": users.device,
        "signup_ts": users.signup_us,
        "_ingested_at": np.full(users.n, at_us, dtype=np.int64),
    }


def merchants_columns(merchants: Merchants, at_us: int) -> Columns:
    return {
        "merchant_id": np.arange(1, merchants.n + 1),
        "country": merchants.country,
        "tier": merchants.tier,
        "main_category_l1": merchants.main_category,
        "joined_ts": merchants.joined_us,
        "_ingested_at": np.full(merchants.n, at_us, dtype=np.int64),
    }


def products_columns(products: Products, at_us: int) -> Columns:
    return {
        "product_id": np.arange(1, products.n + 1),
        "merchant_id": products.merchant + 1,
        "category_l1": products.category,
        "category_l2": products.subcategory,
        "base_price": products.base_price,
        "created_ts": products.created_us,
        "_ingested_at": np.full(products.n, at_us, dtype=np.int64),
    }


def _panel_rows(first_day: np.ndarray, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(entity, day) pairs from each entity's first day to the end of the period."""
    entity, day = np.nonzero(first_day[:, None] <= np.arange(n_days)[None, :])
    return entity, day


def _epoch_days(days: Days, d: np.ndarray) -> np.ndarray:
    return (days.start_us[d] // DAY_US).astype(np.int32)


def product_prices_columns(
    config: SimConfig, days: Days, products: Products, panels: Panels, rng: np.random.Generator
) -> Columns:
    p, d = _panel_rows(products.first_day, days.n)
    lo, hi = config.params.landing.price_snapshot_lag_min
    # the day's prices are published just after midnight, so they land in their own day's partition
    lag = (rng.uniform(lo, hi, len(p)) * 60 * SECOND_US).astype(np.int64)
    return {
        "product_id": p + 1,
        "price_date": _epoch_days(days, d),
        "price": panels.price[p, d],
        "discount_pct": panels.discount[p, d],
        "_ingested_at": days.start_us[d] + lag,
    }


def merchant_daily_columns(
    config: SimConfig, days: Days, merchants: Merchants, panels: Panels, rng: np.random.Generator
) -> Columns:
    m, d = _panel_rows(merchants.first_day, days.n)
    lo, hi = config.params.landing.merchant_snapshot_offset_min
    # whether a merchant went live is only known at the end of the day: the snapshot lands at ~23:50
    offset = (rng.uniform(lo, hi, len(m)) * 60 * SECOND_US).astype(np.int64)
    return {
        "merchant_id": m + 1,
        "snapshot_date": _epoch_days(days, d),
        "rating": panels.rating[m, d],
        "is_live": panels.is_live[m, d],
        "_ingested_at": days.start_us[d] + offset,
    }


def campaign_columns(days: Days, at_us: int) -> tuple[Columns, tuple[str, ...]]:
    idx = np.array([i for i, name in enumerate(days.campaign_names) if name], dtype=np.int64)
    names = tuple(sorted({name for name in days.campaign_names if name}))
    codes = np.array([names.index(days.campaign_names[i]) for i in idx], dtype=np.int32)
    columns = {
        "calendar_date": np.array([(days.dates[i] - EPOCH).days for i in idx], dtype=np.int32),
        "campaign_name": codes,
        "is_mega_sale": days.kind[idx] == DAY_KINDS.index("mega"),
        "_ingested_at": np.full(len(idx), at_us, dtype=np.int64),
    }
    return columns, names
