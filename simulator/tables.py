"""Dimension snapshots and daily panels as contract columns (observable fields only, never latents)."""

from __future__ import annotations

from collections.abc import Iterator

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


def _panel_draws(
    first_day: np.ndarray, n_days: int, rng: np.random.Generator, bounds: tuple[float, float]
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per day: the entities present and each one's uniform draw.

    Draws are taken entity by entity, then day by day (the order of the whole panel's rows), and
    handed out a day at a time, so the partitions can be written as the days go.
    """
    per_entity = np.clip(n_days - first_day.astype(np.int64), 0, None)
    offset = np.concatenate([[0], np.cumsum(per_entity)[:-1]]).astype(np.int64)
    draws = np.empty(int(per_entity.sum()))
    block = 1 << 20  # uniform draws in blocks are the same numbers as one call, without its temporaries
    for start in range(0, len(draws), block):
        draws[start : start + block] = rng.uniform(*bounds, len(draws[start : start + block]))
    for d in range(n_days):
        entity = np.flatnonzero(first_day <= d)
        yield d, entity, draws[offset[entity] + d - first_day[entity]]


def _epoch_day(days: Days, d: int, n: int) -> np.ndarray:
    return np.full(n, days.start_us[d] // DAY_US, dtype=np.int32)


def product_prices_days(
    config: SimConfig, days: Days, products: Products, panels: Panels, rng: np.random.Generator
) -> Iterator[tuple[int, Columns]]:
    """(day, rows) of each day's price snapshot."""
    bounds = config.params.landing.price_snapshot_lag_min
    for d, p, draw in _panel_draws(products.first_day, days.n, rng, bounds):
        # the day's prices are published just after midnight, so they land in their own day's partition
        lag = (draw * 60 * SECOND_US).astype(np.int64)
        yield (
            d,
            {
                "product_id": p + 1,
                "price_date": _epoch_day(days, d, len(p)),
                "price": panels.price[p, d],
                "discount_pct": panels.discount[p, d],
                "_ingested_at": days.start_us[d] + lag,
            },
        )


def merchant_daily_days(
    config: SimConfig, days: Days, merchants: Merchants, panels: Panels, rng: np.random.Generator
) -> Iterator[tuple[int, Columns]]:
    """(day, rows) of each day's merchant snapshot."""
    bounds = config.params.landing.merchant_snapshot_offset_min
    for d, m, draw in _panel_draws(merchants.first_day, days.n, rng, bounds):
        # whether a merchant went live is only known at the end of the day: the snapshot lands at ~23:50
        offset = (draw * 60 * SECOND_US).astype(np.int64)
        yield (
            d,
            {
                "merchant_id": m + 1,
                "snapshot_date": _epoch_day(days, d, len(m)),
                "rating": panels.rating[m, d],
                "is_live": panels.is_live[m, d],
                "_ingested_at": days.start_us[d] + offset,
            },
        )


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
