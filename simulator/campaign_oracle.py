"""The campaign oracle: a merchant's expected funnel on an upcoming day under levers, from the simulator's truth.

The planner (`merchant_growth.planner`) forecasts a merchant's GMV on a campaign day under levers it controls
(discount depth, live-streaming, a price change) and the platform controls (the new-merchant boost, a traffic
share); this module answers the same question from the generative model itself, so the planner can be scored.
It is evaluation only: nothing in merchant_growth/ or serving/ imports it.

The world is the merchant panels' (`simulator.merchant_panel`): the same users, merchants, products, reach and
audience, with the panels' exposure x true rates machinery, evaluated on a day after the data:

* **State of the day.** Each product's list price, the merchants' ratings and the other merchants' live flags
  are those of the last simulated day (nobody knows the future drift; it is a few percent at most). The
  merchant's products are all shown at the scenario's discount depth, at list price x (1 + price change) x
  (1 - discount); the merchant streams or not as the scenario says. The day kind (normal, campaign, mega) and
  the weekend follow the date, so the marketplace's sessions, click and order logits, and multi-buy are the
  campaign's.
* **Exposure.** Expected impressions per product and surface = the panel's `volume` x the merchant's `reach` x
  the slots of the day (sessions scale with the day kind) x the product's share of the incumbent recommender's
  slots. The **new-merchant boost** b multiplies the ranking score of a new merchant's products by 1 + b (as
  `/rank` does); in the simulator the recommender samples ranked slots in proportion to that score (its
  popularity prior), so the boost multiplies the merchant's products' prior by 1 + b; the random slots do not
  move, and the other products' shares shrink by as much as the merchant's grow. The **traffic share** t
  multiplies the merchant's impressions on every surface (the platform hands it t times its slots).
* **Rates.** CTR, CVR and order value of each cell are the means of the true model over the panel's audience
  (common random numbers, no sampling noise): expected clicks = impressions x CTR, orders = clicks x CVR,
  GMV = orders x price x (1 + 2 x multi-buy).

Deterministic: the same world and levers give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

import numpy as np

from simulator.campaigns import DAY_KINDS, campaign_of
from simulator.config import SURFACES, SimConfig
from simulator.entities import rng_for
from simulator.merchant_panel import (
    World,
    _Audience,
    _audience,
    _lift_planted,
    _Market,
    _slot_shares,
    audience_truth,
    build_world,
    merchant_reach,
    panel_params,
)
from simulator.traffic import DayState

NEW_MERCHANT_DAYS = 30  # as serving/schemas.py: a merchant younger than this counts as new for the boost


@dataclass(frozen=True)
class Levers:
    """A scenario, fully specified: every product of the merchant at `discount`, list prices x (1 + price_change),
    live-streaming that day or not, the ranker's new-merchant boost, and a multiplier of its exposure."""

    discount: float
    live: bool
    price_change: float = 0.0
    new_merchant_boost: float = 0.0
    traffic_share: float = 1.0


@dataclass(frozen=True)
class Funnel:
    """Expected counts of the merchant on the day (sums over its products and surfaces)."""

    impressions: float
    clicks: float
    orders: float
    gmv: float
    by_surface: dict[str, float]  # GMV per surface


def day_kind(day: date) -> int:
    campaign = campaign_of(day)
    return 0 if campaign is None else (2 if campaign[1] else 1)


class CampaignOracle:
    """The panel world of a state folder, ready to answer expected funnels under levers."""

    def __init__(self, config: SimConfig, world: World | None = None) -> None:
        self.config = config
        self.world = world if world is not None else build_world(config)
        params = panel_params(config)
        self.volume = params.volume
        # the panel's own stream, drawn in the panel's order: the same audience and reach it drew
        rng = rng_for(config.seed, "merchant_panel")
        self.market = _Market.of(config, self.world)
        self.audience: _Audience = _audience(config, self.world, self.market, params.audience_draws, rng)
        reach = merchant_reach(params, self.world.merchants, self.world.planted, rng)
        self.reach = _lift_planted(config, self.world, self.market, self.audience, params, reach)

    @staticmethod
    def from_home(home: Path) -> CampaignOracle:
        """The world of `home/oracle/generative_params.json` (its seed, scale, end date and parameters)."""
        from simulator.config import ModelParams

        meta = json.loads((home / "oracle" / "generative_params.json").read_text())
        config = SimConfig(
            scale=meta["scale"],
            seed=meta["seed"],
            end_date=date.fromisoformat(meta["end_date"]),
            flaw_rate=meta["flaw_rate"],
            home=home,
            params=ModelParams.model_validate(meta["params"]),
        )
        return CampaignOracle(config)

    @property
    def last_date(self) -> date:
        return self.world.days.dates[-1]

    @cached_property
    def _taste_bar(self) -> np.ndarray:
        users, market = self.world.users, self.market
        d = self.world.days.n - 1
        weight = (market.rate * (users.first_day <= d))[:, None] * users.surface_pref
        return (weight.T @ users.taste) / weight.sum(axis=0)[:, None]

    def merchant_index(self, merchant_id: str) -> int:
        m = int(merchant_id.lstrip("m")) - 1
        if not 0 <= m < self.world.merchants.n:
            raise KeyError(merchant_id)
        return m

    def is_new_merchant(self, merchant_id: str, day: date) -> bool:
        joined_us = int(self.world.merchants.joined_us[self.merchant_index(merchant_id)])
        age_days = (int(self.world.days.start_us[0]) - joined_us) / 86_400_000_000
        age_days += (day - self.world.days.dates[0]).days
        return age_days < NEW_MERCHANT_DAYS

    def funnel(self, merchant_id: str, day: date, levers: Levers, kind: int | None = None) -> Funnel:
        """The merchant's expected funnel on `day` (after the data) under `levers`; `kind` overrides the day's
        kind (0 normal, 1 campaign, 2 mega), e.g. the same weekday as an ordinary day."""
        config, world, market = self.config, self.world, self.market
        tp = config.params.traffic
        m = self.merchant_index(merchant_id)
        d = world.days.n - 1
        ahead = (day - self.last_date).days
        if ahead < 1:
            raise ValueError(f"{day} is not after the data's last day {self.last_date}")
        kind = day_kind(day) if kind is None else kind
        own = np.flatnonzero((world.products.merchant == m) & (world.products.first_day <= d))

        # exposure: the marketplace's slots that day x the product's share of them
        day_mult = tp.day_multiplier[DAY_KINDS[kind]] * (tp.weekend_multiplier if day.weekday() >= 5 else 1.0)
        weight = (market.rate * day_mult * (world.users.first_day <= d))[:, None] * world.users.surface_pref
        slots = weight.sum(axis=0) * (market.len_lo + market.len_hi) / 2 * 0.96
        is_live = world.panels.is_live[:, d].copy()
        is_live[m] = levers.live
        popularity = world.products.popularity.copy()
        if levers.new_merchant_boost and self.is_new_merchant(merchant_id, day):
            popularity[world.products.merchant == m] *= 1.0 + levers.new_merchant_boost
        shares = _slot_shares(
            config, world, d, self._taste_bar, is_live=is_live, popularity=popularity, days_ahead=ahead
        )
        lam = self.volume * self.reach[m] * levers.traffic_share * shares[own] * slots[None, :]

        # the day's state: the merchant's products at the scenario's prices, the rest as on the last day
        panels = world.panels
        list_price = panels.list_price[:, d].copy()
        list_price[own] *= 1.0 + levers.price_change
        discount = panels.discount[:, d].copy()
        discount[own] = levers.discount
        price = np.maximum(np.round(list_price * (1.0 - discount), 2), config.params.products.min_price)
        state = DayState(price, discount, panels.rating[:, d], is_live, kind)

        n_s = len(SURFACES)
        prod_idx = np.repeat(own, n_s)
        surf_idx = np.tile(np.arange(n_s), len(own))
        ctr, cvr, aov = self._rates(state, prod_idx, surf_idx)
        imp = lam.ravel()
        clicks = imp * ctr
        orders = clicks * cvr
        gmv = orders * aov
        by_surface = {s: float(gmv[surf_idx == i].sum()) for i, s in enumerate(SURFACES)}
        return Funnel(float(imp.sum()), float(clicks.sum()), float(orders.sum()), float(gmv.sum()), by_surface)

    def _rates(
        self, state: DayState, prod_idx: np.ndarray, surf_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(CTR, CVR, order value) of each cell: the true model averaged over the cell's panel audience."""
        p_click, p_order, value = audience_truth(self.config, self.world, self.audience, state, prod_idx, surf_idx)
        p_buy = p_click * p_order
        ctr = p_click.mean(axis=1)
        cvr = p_buy.sum(axis=1) / np.maximum(p_click.sum(axis=1), 1e-300)
        aov = (p_buy * value).sum(axis=1) / np.maximum(p_buy.sum(axis=1), 1e-300)
        return ctr, cvr, aov
