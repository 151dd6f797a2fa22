"""The campaign oracle: a merchant's expected funnel on an upcoming day under levers, from the true model."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from simulator.campaign_oracle import CampaignOracle, Levers, day_kind
from tests.simulator.conftest import Run

# the tiny run ends 2026-11-20: an ordinary day, the 11.25 payday and the 12.12 mega sale ahead
NORMAL, PAYDAY, MEGA = date(2026, 11, 25) - timedelta(days=1), date(2026, 11, 25), date(2026, 12, 12)


@pytest.fixture(scope="module")
def oracle(tiny: Run) -> CampaignOracle:
    return CampaignOracle.from_home(tiny.home)


@pytest.fixture(scope="module")
def merchant(oracle: CampaignOracle) -> str:
    """The established merchant with the most listed products (so every surface has cells)."""
    world = oracle.world
    counts = np.bincount(world.products.merchant, minlength=world.merchants.n)
    counts[world.merchants.is_new] = -1
    return f"m{int(counts.argmax()) + 1:05d}"


def test_days_after_the_data_only(oracle: CampaignOracle, merchant: str) -> None:
    with pytest.raises(ValueError, match="not after the data"):
        oracle.funnel(merchant, oracle.last_date, Levers(0.1, False))
    assert [day_kind(d) for d in (NORMAL, PAYDAY, MEGA)] == [0, 1, 2]


def test_deterministic(oracle: CampaignOracle, tiny: Run, merchant: str) -> None:
    again = CampaignOracle.from_home(tiny.home)
    assert oracle.funnel(merchant, MEGA, Levers(0.2, True)) == again.funnel(merchant, MEGA, Levers(0.2, True))


def test_deeper_discount_raises_true_ctr_cvr_and_orders(oracle: CampaignOracle, merchant: str) -> None:
    shallow = oracle.funnel(merchant, PAYDAY, Levers(0.05, False))
    deep = oracle.funnel(merchant, PAYDAY, Levers(0.40, False))
    assert deep.impressions == pytest.approx(shallow.impressions)  # exposure does not read prices
    assert deep.clicks / deep.impressions > shallow.clicks / shallow.impressions
    assert deep.orders / deep.clicks > shallow.orders / shallow.clicks
    assert deep.orders > shallow.orders * 1.5


def test_price_increase_lowers_orders_and_raises_order_value(oracle: CampaignOracle, merchant: str) -> None:
    base = oracle.funnel(merchant, NORMAL, Levers(0.1, False))
    dear = oracle.funnel(merchant, NORMAL, Levers(0.1, False, price_change=0.3))
    assert dear.orders < base.orders
    assert dear.gmv / dear.orders > base.gmv / base.orders


def test_live_streaming_only_moves_the_live_stream_surface(oracle: CampaignOracle, merchant: str) -> None:
    off = oracle.funnel(merchant, PAYDAY, Levers(0.1, False))
    on = oracle.funnel(merchant, PAYDAY, Levers(0.1, True))
    assert on.by_surface["live_stream"] > 3 * off.by_surface["live_stream"]
    for surface in ("home_feed", "short_video", "search"):
        assert on.by_surface[surface] == pytest.approx(off.by_surface[surface], rel=1e-12)


def test_campaign_days_outsell_an_ordinary_day(oracle: CampaignOracle, merchant: str) -> None:
    levers = Levers(0.1, False)
    normal = oracle.funnel(merchant, MEGA, levers, kind=0).gmv
    payday = oracle.funnel(merchant, MEGA, levers, kind=1).gmv
    mega = oracle.funnel(merchant, MEGA, levers).gmv
    assert normal < payday < mega


def test_traffic_share_scales_the_funnel(oracle: CampaignOracle, merchant: str) -> None:
    one = oracle.funnel(merchant, MEGA, Levers(0.1, False))
    more = oracle.funnel(merchant, MEGA, Levers(0.1, False, traffic_share=1.5))
    assert more.gmv == pytest.approx(1.5 * one.gmv, rel=1e-9)
    assert more.impressions == pytest.approx(1.5 * one.impressions, rel=1e-9)


def test_boost_lifts_a_new_merchant_only(oracle: CampaignOracle, merchant: str) -> None:
    world = oracle.world
    new = [f"m{m + 1:05d}" for m in np.flatnonzero(world.merchants.is_new)]
    young = [m for m in new if oracle.is_new_merchant(m, PAYDAY)]
    assert young, "the tiny world has a merchant younger than 30 days on the payday"
    m = young[0]
    plain = oracle.funnel(m, PAYDAY, Levers(0.1, False))
    boosted = oracle.funnel(m, PAYDAY, Levers(0.1, False, new_merchant_boost=0.5))
    assert plain.impressions < boosted.impressions < 1.5 * plain.impressions  # random slots do not move
    assert not oracle.is_new_merchant(merchant, PAYDAY)
    established = oracle.funnel(merchant, PAYDAY, Levers(0.1, False, new_merchant_boost=0.5))
    assert established == oracle.funnel(merchant, PAYDAY, Levers(0.1, False))
