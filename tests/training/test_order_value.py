"""Order value per unit of price: pooled by price band, and per day kind where the model knows the day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from platform_common.feature_spec import FeatureSpec
from training.bundle import DAY_KIND_FEATURE, PLAN_PRICE_FEATURE, BundleConfig, RankerBundle
from training.fitting import at_value_price, units_by_day_kind, units_by_price_band


def _orders(n: int, mega_share: float, mega_units: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = rng.uniform(1, 100, n)
    kind = np.where(rng.random(n) < mega_share, 2.0, 0.0)
    units = np.where(kind == 2.0, mega_units, 1.2)
    return pd.DataFrame({"price": price, "order_gmv": price * units, DAY_KIND_FEATURE: kind})


def test_each_day_kind_gets_its_own_value_within_the_pooled_bands() -> None:
    orders = _orders(5_000, 0.2, 1.5)
    edges, pooled = units_by_price_band(orders)
    by_kind = units_by_day_kind(orders, edges)
    assert set(by_kind) == {"0", "2"}
    assert by_kind["0"] == pytest.approx((1.2,) * 5)
    assert by_kind["2"] == pytest.approx((1.5,) * 5)
    assert all(1.2 < u < 1.5 for u in pooled)
    config = BundleConfig(price_bands=edges, units_by_band=pooled, units_by_day_kind=by_kind)
    price = np.array([5.0, 5.0, 90.0, 90.0, 50.0])
    kind = np.array([0.0, 2.0, 2.0, np.nan, 1.0])  # no plan yet, and a kind never fitted: the pooled bands
    got = config.units(price, kind)
    assert got[:3] == pytest.approx([1.2, 1.5, 1.5])
    assert got[3:] == pytest.approx(config.units(price)[3:])
    assert config.units(price) == pytest.approx(config.units(price, None))


def test_a_kind_with_few_orders_in_a_band_falls_back_to_the_pooled_value() -> None:
    orders = _orders(1_000, 0.05, 1.5)  # about 10 mega orders per band: noise, not a basket size
    edges, _ = units_by_price_band(orders)
    assert set(units_by_day_kind(orders, edges)) == {"0"}


def test_a_model_without_the_plan_has_no_value_per_kind() -> None:
    orders = _orders(5_000, 0.2, 1.5).drop(columns=DAY_KIND_FEATURE)
    edges, _ = units_by_price_band(orders)
    assert units_by_day_kind(orders, edges) == {}


def _bundle(numeric: tuple[str, ...], config: BundleConfig) -> RankerBundle:
    bundle = RankerBundle()
    bundle.spec = FeatureSpec(feature_service="t", numeric=numeric, categorical=(), vocabularies={})
    bundle.config = config
    return bundle


def test_an_impression_is_valued_at_the_days_plan_price_where_the_model_reads_the_plan() -> None:
    config = BundleConfig(units_per_order=1.0)
    x = np.array([[3.0, 8.0, 2.0], [3.0, np.nan, np.nan]])  # the second product has no plan landed yet
    planned = _bundle(("price", PLAN_PRICE_FEATURE, DAY_KIND_FEATURE), config)
    price = np.array([10.0, 10.0])  # the daily product row's (yesterday's) price
    assert planned.expected_gmv(np.array([0.1, 0.1]), price, x) == pytest.approx([0.8, 1.0])
    assert planned.day_kind(x) == pytest.approx([2.0, np.nan], nan_ok=True)
    plain = _bundle(("price",), config)
    assert plain.expected_gmv(np.array([0.1, 0.1]), price, x[:, :1]) == pytest.approx([1.0, 1.0])


def test_orders_are_fitted_at_the_price_the_bundle_values_them_at() -> None:
    orders = pd.DataFrame({"price": [10.0, 10.0], "order_gmv": [8.0, 10.0], PLAN_PRICE_FEATURE: [8.0, np.nan]})
    assert at_value_price(orders)["price"].tolist() == [8.0, 10.0]
    assert at_value_price(orders.drop(columns=PLAN_PRICE_FEATURE))["price"].tolist() == [10.0, 10.0]
