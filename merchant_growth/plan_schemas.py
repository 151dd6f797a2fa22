"""Request and response models of the campaign what-if planner (`POST /merchant/plan`, `make plan-campaign`).

Levers are validated here (pydantic `ValidationError`, a `ValueError`: HTTP 400 naming the field); checks that need
the data (the campaign's next date after the data, the boost of a merchant that is not new) raise
`InvalidScenarioError` (also 400) in `merchant_growth.planner`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from merchant_growth.schemas import MerchantId

MAX_SCENARIOS = 20
MAX_DISCOUNT = 0.9  # the simulator's and the price snapshots' cap on a discount
PRICE_CHANGE_RANGE = (-0.5, 0.5)
TRAFFIC_SHARE_RANGE = (0.5, 2.0)
MAX_BOOST = 1.0  # as /rank's new_merchant_boost
MEGA_MONTHS = (9, 10, 11, 12)
CAMPAIGNS: tuple[str, ...] = tuple(f"{m}.{m}" for m in range(1, 13)) + ("payday",)

ScenarioName = Annotated[
    str, StringConstraints(min_length=1, max_length=40, strip_whitespace=True, pattern=r"^[A-Za-z0-9_ .,+%\-]+$")
]


class Levers(BaseModel):
    """One scenario's levers. Omitted: as the merchant does now (`discount`: its mean discount over the last 7
    days of data; `live`: not streaming) and no platform help (boost 0, traffic share 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ScenarioName
    discount: float | None = Field(
        default=None, ge=0.0, le=MAX_DISCOUNT, description="Discount depth on every product of the merchant, 0-0.9."
    )
    live: bool | None = Field(default=None, description="The merchant live-streams on the campaign day.")
    price_change: float = Field(
        default=0.0,
        ge=PRICE_CHANGE_RANGE[0],
        le=PRICE_CHANGE_RANGE[1],
        description="Relative change of every list price, -0.5 to +0.5 (before the discount).",
    )
    new_merchant_boost: float = Field(
        default=0.0,
        ge=0.0,
        le=MAX_BOOST,
        description="The ranker's new-merchant boost (score x (1 + boost)); only for merchants younger than 30 days.",
    )
    traffic_share: float = Field(
        default=1.0,
        ge=TRAFFIC_SHARE_RANGE[0],
        le=TRAFFIC_SHARE_RANGE[1],
        description="Multiplier of the merchant's exposure the platform grants, 0.5-2.",
    )


class PlanRequest(BaseModel):
    """Forecast a merchant's GMV on the next `campaign` day after the data under each scenario."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    merchant_id: MerchantId
    campaign: str = Field(description="A campaign of the calendar: 1.1 ... 12.12 (double days) or payday.")
    scenarios: list[Levers] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SCENARIOS,
        description="Scenarios to compare; omitted: do nothing plus one scenario per lever.",
    )

    @field_validator("campaign")
    @classmethod
    def _known_campaign(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in CAMPAIGNS:
            raise ValueError(f"unknown campaign {value!r}: expected one of {', '.join(CAMPAIGNS)}")
        return value

    @field_validator("scenarios")
    @classmethod
    def _unique_names(cls, value: list[Levers] | None) -> list[Levers] | None:
        if value is not None:
            names = [s.name for s in value]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"scenario names must be unique: {', '.join(dupes)} repeated")
        return value


class Estimate(BaseModel):
    """A point estimate with its 95% interval."""

    value: float
    low: float
    high: float


class ResolvedLevers(BaseModel):
    discount: float
    live: bool
    price_change: float
    new_merchant_boost: float
    traffic_share: float


class ScenarioFunnel(BaseModel):
    """Point forecasts of the funnel parts on the day (GMV = impressions x CTR x CVR x order value)."""

    impressions: float
    clicks: float
    orders: float
    ctr: float
    cvr: float
    aov: float


class ScenarioResult(BaseModel):
    name: str
    levers: ResolvedLevers
    gmv: Estimate
    uplift_vs_do_nothing: Estimate  # GMV / GMV of the do-nothing scenario - 1
    uplift_vs_normal_day: Estimate  # GMV / the do-nothing GMV of an ordinary day on the same weekday - 1
    funnel: ScenarioFunnel
    gmv_by_surface: dict[str, float]


class LeverEffect(BaseModel):
    """A coefficient of one funnel part's model (log scale), with its standard error (clustered by day)."""

    part: Literal["traffic", "ctr", "cvr", "aov"]
    covariate: str
    coefficient: float | None  # None: not identified in the history (no variation)
    std_error: float | None


class PlanResponse(BaseModel):
    merchant_id: str
    campaign: str
    campaign_date: date
    day_kind: Literal["normal", "campaign", "mega"]
    data_end: date
    days_ahead: int
    new_merchant: bool
    funnel_source: Literal["panel", "events"]
    do_nothing: ResolvedLevers
    normal_day_gmv: Estimate
    scenarios: list[ScenarioResult]
    effects: list[LeverEffect]
    notes: list[str]
