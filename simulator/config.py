"""What to simulate (scale, seed, period, flaw rate) and every parameter of the generative model.

Everything the simulator draws from lives in `ModelParams`, so `oracle/generative_params.json` is a
complete description of the world and two runs with the same config are byte-identical.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from platform_common.settings import Settings

ScaleName = Literal["tiny", "small", "medium", "large"]

SURFACES: tuple[str, ...] = ("home_feed", "short_video", "live_stream", "search")
COUNTRIES: tuple[str, ...] = ("ID", "TH", "VN", "MY", "PH", "SG")
DEVICES: tuple[str, ...] = ("android", "ios", "web")
TIERS: tuple[str, ...] = ("mall", "preferred", "regular")
CAUSES: tuple[str, ...] = ("price_increase", "rating_drop", "started_live")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScaleSpec(_Frozen):
    n_users: int
    n_merchants: int
    n_products: int
    n_days: int
    target_impressions: int
    n_planted: int


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(n_users=600, n_merchants=40, n_products=400, n_days=21, target_impressions=40_000, n_planted=3),
    "small": ScaleSpec(
        n_users=20_000,
        n_merchants=400,
        n_products=5_000,
        n_days=60,
        target_impressions=1_000_000,
        n_planted=12,
    ),
    "medium": ScaleSpec(
        n_users=80_000,
        n_merchants=1_500,
        n_products=20_000,
        n_days=90,
        target_impressions=5_000_000,
        n_planted=18,
    ),
    # Bigger than memory (issue 14): medium's period, users and products a little busier than small's
    # (about 1 impression per user-day, 4 per product-day); the simulator streams it day by day.
    "large": ScaleSpec(
        n_users=240_000,
        n_merchants=4_500,
        n_products=60_000,
        n_days=90,
        target_impressions=22_000_000,
        n_planted=24,
    ),
}


class Category(_Frozen):
    name: str
    share: float  # share of catalogue and of the average user's taste
    median_price: float  # USD, median base price of the category
    subcategories: tuple[str, ...]


CATALOG: tuple[Category, ...] = (
    Category(
        name="fashion",
        share=0.17,
        median_price=11.0,
        subcategories=("womens_clothing", "mens_clothing", "bags", "shoes", "fashion_accessories"),
    ),
    Category(
        name="beauty",
        share=0.14,
        median_price=9.0,
        subcategories=("skincare", "makeup", "haircare", "fragrance"),
    ),
    Category(
        name="electronics",
        share=0.08,
        median_price=28.0,
        subcategories=("audio", "wearables", "small_appliances", "computer_accessories"),
    ),
    Category(
        name="mobile",
        share=0.08,
        median_price=18.0,
        subcategories=("phone_cases", "chargers_cables", "smartphones"),
    ),
    Category(
        name="home_living",
        share=0.12,
        median_price=13.0,
        subcategories=("kitchen", "bedding", "storage", "decor"),
    ),
    Category(
        name="groceries",
        share=0.10,
        median_price=4.0,
        subcategories=("snacks", "beverages", "instant_food", "condiments"),
    ),
    Category(
        name="mother_baby",
        share=0.08,
        median_price=12.0,
        subcategories=("diapers", "baby_food", "baby_toys", "maternity"),
    ),
    Category(
        name="health",
        share=0.07,
        median_price=10.0,
        subcategories=("supplements", "medical_supplies", "personal_care"),
    ),
    Category(
        name="sports_outdoor",
        share=0.08,
        median_price=16.0,
        subcategories=("fitness", "outdoor", "sportswear"),
    ),
    Category(
        name="toys_hobbies",
        share=0.08,
        median_price=10.0,
        subcategories=("toys", "stationery", "collectibles"),
    ),
)


class UserParams(_Frozen):
    country_shares: dict[str, float] = {
        "ID": 0.34,
        "TH": 0.15,
        "VN": 0.17,
        "MY": 0.10,
        "PH": 0.18,
        "SG": 0.06,
    }
    utc_offset_hours: dict[str, int] = {"ID": 7, "TH": 7, "VN": 7, "MY": 8, "PH": 8, "SG": 8}
    ios_share: dict[str, float] = {"ID": 0.12, "TH": 0.30, "VN": 0.25, "MY": 0.30, "PH": 0.18, "SG": 0.60}
    web_share: float = 0.06
    # Dirichlet concentration of taste around the catalogue shares: this low, 2-3 categories dominate.
    taste_concentration: float = 2.5
    price_sensitivity_sigma: float = 0.45
    price_sensitivity_by_country: dict[str, float] = {
        "ID": 1.15,
        "TH": 0.95,
        "VN": 1.15,
        "MY": 0.85,
        "PH": 1.10,
        "SG": 0.55,
    }
    activity_sigma: float = 1.1  # lognormal: a few heavy users, a long tail of occasional ones
    new_user_share: float = 0.08  # users who sign up during the period...
    new_user_window: float = 0.9  # ...within its first 90%, so they leave some behaviour behind
    signup_age_mean_days: float = 420.0
    click_bias_sigma: float = 0.4
    buy_bias_sigma: float = 0.45
    surface_pref_concentration: float = 6.0


class MerchantParams(_Frozen):
    tier_shares: dict[str, float] = {"mall": 0.10, "preferred": 0.25, "regular": 0.65}
    rating_mean_by_tier: dict[str, float] = {"mall": 4.75, "preferred": 4.55, "regular": 4.30}
    rating_sd: float = 0.25
    rating_drift_phi: float = 0.85  # AR(1) pull back towards the merchant's base rating
    rating_drift_sigma: float = 0.035
    live_share_by_tier: dict[str, float] = {"mall": 0.55, "preferred": 0.40, "regular": 0.20}
    live_prob_range: tuple[float, float] = (0.25, 0.85)
    live_prob_mega_multiplier: float = 1.4
    new_merchant_share: float = 0.12
    new_merchant_join_window: float = 0.8  # new merchants join within the first 80% of the period
    joined_age_mean_days: float = 600.0  # established merchants: exponential age at the period start
    base_rating_clip: tuple[float, float] = (3.0, 4.95)
    quality_sd: float = 0.4
    size_sigma: float = 1.0  # lognormal spread of catalogue size
    size_by_tier: dict[str, float] = {"mall": 2.5, "preferred": 1.5, "regular": 1.0}


class ProductParams(_Frozen):
    main_category_adherence: float = 0.85
    price_sigma: float = 0.6  # lognormal spread of base price around the category median
    quality_sd: float = 0.8
    quality_by_tier: dict[str, float] = {"mall": 0.3, "preferred": 0.1, "regular": 0.0}
    new_product_share: float = 0.10  # products (of existing merchants) listed during the period...
    new_product_window: float = 0.9  # ...within its first 90%
    new_merchant_listing_days: float = 2.0  # a new merchant lists its catalogue within this many days
    # The incumbent recommender's popularity prior: learned from past clicks, so it tracks quality.
    popularity_quality_weight: float = 0.8
    popularity_noise_sd: float = 0.6
    popularity_ramp_days: float = 7.0  # new listings need about a week to earn exposure
    price_drift_phi: float = 0.9
    price_drift_sigma: float = 0.012
    promo_propensity_beta: tuple[float, float] = (2.0, 6.0)
    # Discount depth ~ Beta(a, b) by day kind: normal, payday/double day, mega sale.
    discount_beta: dict[str, tuple[float, float]] = {
        "normal": (2.0, 10.0),
        "campaign": (2.5, 7.5),
        "mega": (3.0, 5.0),
    }
    promo_multiplier: dict[str, float] = {"normal": 1.0, "campaign": 1.8, "mega": 3.0}
    min_price: float = 0.3


class TrafficParams(_Frozen):
    surface_mix: dict[str, float] = {
        "home_feed": 0.38,
        "short_video": 0.27,
        "live_stream": 0.12,
        "search": 0.23,
    }
    list_length: dict[str, tuple[int, int]] = {
        "home_feed": (8, 20),
        "short_video": (3, 8),
        "live_stream": (3, 6),
        "search": (10, 20),
    }
    # Seconds between consecutive positions: a feed scrolls fast, a video or live room holds attention.
    position_gap_seconds: dict[str, float] = {
        "home_feed": 1.2,
        "short_video": 14.0,
        "live_stream": 25.0,
        "search": 1.6,
    }
    # Candidate sources of the incumbent recommender per surface: taste, popular, random, live.
    candidate_mix: dict[str, tuple[float, float, float, float]] = {
        "home_feed": (0.50, 0.30, 0.20, 0.0),
        "short_video": (0.45, 0.35, 0.20, 0.0),
        "live_stream": (0.10, 0.10, 0.05, 0.75),
        "search": (0.0, 0.0, 0.0, 0.0),  # search draws every slot from the query's category
    }
    search_query_from_taste: float = 0.85
    search_popularity_weighted: float = 0.7  # the rest is uniform within the query category
    recommender_taste_weight: float = 0.8
    recommender_noise_scale: float = 1.5  # Gumbel noise of the incumbent ranking
    position_jitter: tuple[float, float] = (0.6, 1.4)  # multiplies the position gap
    weekend_multiplier: float = 1.08
    day_multiplier: dict[str, float] = {"normal": 1.0, "campaign": 1.4, "mega": 2.5}
    # Relative session intensity by local hour 0..23: lunch and evening peaks, dead of night.
    local_hour_weights: tuple[float, ...] = (
        0.9, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.0, 1.3, 1.4, 1.5, 1.7,
        2.0, 1.9, 1.5, 1.4, 1.5, 1.7, 1.9, 2.3, 2.7, 2.8, 2.4, 1.6,
    )  # fmt: skip


class SessionParams(_Frozen):
    """Sessions of several pages, and the intent a session shops with (docs/simulator.md, "Sessions and intent").

    Ranges from public e-commerce session logs (Diginetica, YooChoose, Coveo SIGIR 2021): 2-5 page views per
    session on average, a median of some tens of seconds between them, most sessions end within 15 minutes.
    """

    # pages per session: 1 + truncated geometric; P(another page) = page_continue, at most max_pages (mean ~2.4)
    page_continue: float = Field(default=0.6, ge=0.3, le=0.8)
    max_pages: int = Field(default=6, ge=2, le=10)
    # between pages: the previous page's viewing time, then a lognormal pause (median 20 s: seconds to minutes)
    think_median_s: float = Field(default=20.0, ge=5.0, le=90.0)
    think_sigma: float = Field(default=1.0, ge=0.3, le=1.5)
    # sometimes the shopper leaves and comes back: minutes later, within the 30-minute session gap
    return_visit_prob: float = Field(default=0.12, ge=0.0, le=0.3)
    return_visit_min: tuple[float, float] = (3.0, 25.0)
    # intent: a category the session shops for, mostly one of the user's tastes, sometimes outside them
    intent_prob: float = Field(default=0.55, ge=0.2, le=0.8)
    intent_from_taste: float = Field(default=0.8, ge=0.5, le=0.95)
    intent_click_weight: float = Field(default=0.7, ge=0.3, le=1.2)  # click logit boost on the intent category
    intent_order_weight: float = Field(default=0.25, ge=0.0, le=0.5)  # order logit boost, smaller
    # each click raises the click logit of the same category for the rest of the session, up to a cap
    interest_click_weight: float = Field(default=0.3, ge=0.1, le=0.6)
    interest_cap: int = Field(default=3, ge=1, le=5)
    # The merchant panel's audience has no sessions: it adds back what the click intercept gave up to the session
    # terms (-3.7 -> -4.0), so its rates are those it had before the session model.
    panel_click_offset: float = 0.3


class ClickParams(_Frozen):
    intercept: float = -4.0  # -3.7 before sessions and intent: their boosts add about 0.3 to the mean logit
    surface_offset: dict[str, float] = {
        "home_feed": 0.0,
        "short_video": -0.15,
        "live_stream": 0.2,
        "search": 0.45,
    }
    # Examination probability (1 / position) ** eta: steep in lists, flat in a video or live room.
    examination_eta: dict[str, float] = {
        "home_feed": 0.4,
        "short_video": 0.25,
        "live_stream": 0.25,
        "search": 0.55,
    }
    affinity_weight: float = 0.5  # times log(n_categories * taste[user, category]), clipped
    affinity_clip: tuple[float, float] = (-2.5, 2.0)
    quality_weight: float = 0.45
    price_weight: float = 0.55  # times price sensitivity times log(price / category median)
    discount_weight: float = 1.0
    live_weight: float = 0.6  # merchant live-streaming, on the live_stream surface only
    campaign_weight: dict[str, float] = {"normal": 0.0, "campaign": 0.1, "mega": 0.25}
    rating_weight: float = 0.3  # times (rating - 4.5)
    tier_weight: dict[str, float] = {"mall": 0.1, "preferred": 0.05, "regular": 0.0}
    evening_weight: float = 0.1  # local hours in evening_hours
    evening_hours: tuple[int, int] = (19, 22)  # inclusive
    noise_sd: float = 0.3  # per-impression context nobody observes


class OrderParams(_Frozen):
    intercept: float = -4.8
    affinity_weight: float = 0.25
    quality_weight: float = 0.35
    price_weight: float = 0.7
    discount_weight: float = 1.5
    rating_weight: float = 0.9
    campaign_weight: dict[str, float] = {"normal": 0.0, "campaign": 0.25, "mega": 0.5}
    live_weight: float = 0.5
    tier_weight: dict[str, float] = {"mall": 0.25, "preferred": 0.1, "regular": 0.0}
    ios_weight: float = 0.15
    noise_sd: float = 0.3
    # quantity = 1 + Binomial(2, pi), pi = base / (1 + unit_price / price_scale): cheap goods go in bulk.
    quantity_base: float = 0.22
    quantity_price_scale: float = 8.0
    quantity_mega_multiplier: float = 1.3
    click_delay_median_s: float = 6.0
    click_delay_sigma: float = 0.8
    order_delay_median_min: float = 25.0
    order_delay_sigma: float = 1.3
    order_delay_max_h: float = 48.0


class LandingParams(_Frozen):
    on_time_lag_s: tuple[float, float] = (5.0, 600.0)
    late_lag_days: tuple[float, float] = (1.0, 5.0)
    future_skew_h: tuple[float, float] = (0.5, 36.0)
    # Daily price snapshots land just after midnight, merchant snapshots just before, dimensions at 23:30.
    price_snapshot_lag_min: tuple[float, float] = (1.0, 30.0)
    merchant_snapshot_offset_min: tuple[float, float] = (1430.0, 1439.0)
    dimension_snapshot_offset_min: float = 1410.0


class PlantParams(_Frozen):
    price_increase: tuple[float, float] = (0.20, 0.30)
    rating_drop: tuple[float, float] = (0.8, 1.2)
    min_products: int = 3


class ModelParams(_Frozen):
    users: UserParams = UserParams()
    merchants: MerchantParams = MerchantParams()
    products: ProductParams = ProductParams()
    traffic: TrafficParams = TrafficParams()
    sessions: SessionParams = SessionParams()
    clicks: ClickParams = ClickParams()
    orders: OrderParams = OrderParams()
    landing: LandingParams = LandingParams()
    plants: PlantParams = PlantParams()


def utc_today() -> date:
    return datetime.now(UTC).date()


class SimConfig(_Frozen):
    """One simulation run. `end_date` is exclusive: the period is the `n_days` full UTC days before it."""

    scale: ScaleName = "small"
    seed: int = 42
    end_date: date = Field(default_factory=utc_today)
    flaw_rate: float = Field(default=0.005, ge=0.0, le=0.05)
    home: Path | None = None  # None: Settings() (SHOPRANK_HOME or <repo>/.state)
    # A longer (or shorter) history than the scale's own: the same marketplace and daily volume over more days,
    # e.g. several earlier mega sales to learn the calendar from (docs/calendar_models.md). None: the scale's.
    days: int | None = Field(default=None, ge=7, le=800)
    params: ModelParams = ModelParams()

    @property
    def spec(self) -> ScaleSpec:
        base = SCALES[self.scale]
        if self.days is None or self.days == base.n_days:
            return base
        # target_impressions is the period's total: scaled with the days, so each day keeps its volume
        volume = round(base.target_impressions * self.days / base.n_days)
        return base.model_copy(update={"n_days": self.days, "target_impressions": volume})

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.spec.n_days)

    def settings(self) -> Settings:
        return state_settings(self.home)


def env_scale() -> ScaleName:
    """SHOPRANK_SCALE as the simulator understands it (default small)."""
    value = os.environ.get("SHOPRANK_SCALE", "small")
    if value not in SCALES:
        raise ValueError(f"SHOPRANK_SCALE={value!r}: expected one of {', '.join(SCALES)}")
    return value  # type: ignore[return-value]  # checked against SCALES just above


def state_settings(home: Path | None = None) -> Settings:
    """The platform settings, for where state lives (SHOPRANK_HOME unless `home`)."""
    return Settings() if home is None else Settings(home=home)
