"""Request and response models of the merchant growth API (diagnostics and forecasts).

Requests reject bad input with a pydantic `ValidationError` (a `ValueError`: HTTP 400) naming the field; checks
that need the data (a merchant that does not exist, a period outside the data) raise the errors of
`merchant_growth.errors` instead.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

MAX_PERIOD_DAYS = 92
MAX_ID_LENGTH = 64
FACTORS = ("traffic", "ctr", "cvr", "aov")

MerchantId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strip_whitespace=True, pattern=r"^[A-Za-z0-9_\-]+$")
]

Cause = Literal[
    "price_increase",
    "price_decrease",
    "rating_drop",
    "rating_rise",
    "started_live",
    "stopped_live",
    "discount_up",
    "discount_down",
    "campaign_calendar",
    "category_trend",
]


class Period(BaseModel):
    """A range of UTC days, both ends included."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError("a period is [start, end]: two dates")
            return {"start": value[0], "end": value[1]}
        if isinstance(value, str) and ":" in value:
            start, end = value.split(":", 1)
            return {"start": start, "end": end}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.start > self.end:
            raise ValueError(f"period start {self.start} is after its end {self.end}")
        if self.days > MAX_PERIOD_DAYS:
            raise ValueError(f"a period spans at most {MAX_PERIOD_DAYS} days, not {self.days}")
        return self

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


class DiagnoseRequest(BaseModel):
    """Why did a merchant's GMV change between a baseline period `period_a` and a later period `period_b`?

    Both periods omitted: `period_b` is the last 7 days of the data and `period_a` the 7 days before. Only
    `period_b` given: `period_a` is the same number of days right before it (a campaign vs the days before it).
    """

    model_config = ConfigDict(extra="forbid")

    merchant_id: MerchantId
    period_a: Period | None = Field(None, description="Baseline (earlier) period; default: before period_b.")
    period_b: Period | None = Field(None, description="Period to explain (later); default: last 7 days of data.")
    top_products: int = Field(10, ge=1, le=100, description="Products listed one by one; the rest are summed.")
    explain_with_model: bool = Field(True, description="Add the ranking model's SHAP explanation (slower).")
    funnel_source: Literal["auto", "panel", "events"] = Field(
        "auto", description="Funnel counts: the merchant panels (auto when present) or the event-level marts."
    )
    n_boot: int = Field(1000, ge=100, le=10000, description="Bootstrap replicates of the intervals.")
    max_model_rows: int = Field(2000, ge=50, le=20000, description="Impressions sampled per group for SHAP.")

    @model_validator(mode="after")
    def _periods_in_order(self) -> DiagnoseRequest:
        if self.period_a is not None and self.period_b is None:
            raise ValueError("period_b is required when period_a is given")
        if self.period_a is not None and self.period_b is not None and self.period_a.end >= self.period_b.start:
            raise ValueError(
                f"period_a ({self.period_a}) is the baseline and must end before period_b ({self.period_b}) starts"
            )
        return self


class FunnelTotals(BaseModel):
    """The funnel of one period; rates are 0 without a denominator."""

    days: int
    impressions: int
    clicks: int
    orders: int
    gmv: float
    impressions_per_day: float
    ctr: float
    cvr: float
    aov: float
    gmv_per_day: float


class Contributions(BaseModel):
    """Parts of a change of GMV per day; they add up to it (exactly in rational arithmetic)."""

    traffic: float = Field(description="Impressions per day.")
    ctr: float = Field(description="Clicks / impressions.")
    cvr: float = Field(description="Orders / clicks.")
    aov: float = Field(description="GMV / orders (average order value).")

    def total(self) -> float:
        return self.traffic + self.ctr + self.cvr + self.aov

    def largest(self) -> str:
        return max(FACTORS, key=lambda f: abs(getattr(self, f)))


class Interval(BaseModel):
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def sign(self) -> int:
        """+1 / -1 when the whole interval lies above / below 0, else 0 (within noise)."""
        return 1 if self.low > 0 else (-1 if self.high < 0 else 0)

    def __str__(self) -> str:
        return f"[{self.low:+,.2f}, {self.high:+,.2f}]"


class PartIntervals(BaseModel):
    """Bootstrap intervals (over days) of each part of a change of GMV per day; see uncertainty.py."""

    level: float = Field(description="Coverage of each interval, e.g. 0.95.")
    traffic: Interval
    ctr: Interval
    cvr: Interval
    aov: Interval
    conversion: Interval = Field(description="CTR + CVR parts: what price, rating and discounts act through.")
    delta: Interval = Field(description="The change of GMV per day itself.")

    def distinguishable(self) -> list[str]:
        """The parts whose interval excludes 0."""
        return [f for f in FACTORS if getattr(self, f).excludes_zero()]


class SegmentChange(BaseModel):
    """One segment (a surface, a product, or the rest of the products) and its share of the change."""

    segment: str
    gmv_per_day_a: float
    gmv_per_day_b: float
    delta: float
    contributions: Contributions
    funnel_a: FunnelTotals | None = None
    funnel_b: FunnelTotals | None = None
    intervals: PartIntervals | None = None


class Decomposition(BaseModel):
    method: Literal["shapley"] = "shapley"
    basis: Literal["gmv_per_day"] = "gmv_per_day"
    gmv_per_day_a: float
    gmv_per_day_b: float
    delta: float
    relative_change: float | None = Field(description="delta / gmv_per_day_a; null when period a had no GMV.")
    contributions: Contributions = Field(description="Merchant-level: traffic x CTR x CVR x AOV.")
    residual: float = Field(description="delta minus the float sum of the contributions (rounding only).")
    by_surface: list[SegmentChange] = Field(description="Per surface; the deltas add up to delta.")
    by_product: list[SegmentChange] = Field(description="Top products, then the rest; deltas add up to delta.")
    intervals: PartIntervals | None = Field(None, description="Bootstrap intervals of the merchant-level parts.")
    distinguishable_parts: list[str] = Field(
        default_factory=list, description="Merchant-level parts whose interval excludes 0 (the rest is noise)."
    )


class Evidence(BaseModel):
    """A lever measured on the merchant in both periods, against the median change of its category peers."""

    metric: str
    description: str
    merchant_a: float | None
    merchant_b: float | None
    change: float | None = Field(description="b - a (or b / a - 1 for a relative metric).")
    peers_change: float | None = Field(description="Median change of the category peers.")
    change_vs_peers: float | None = Field(description="change - peers_change: what is the merchant's own.")
    relative: bool = False


class Finding(BaseModel):
    cause: Cause
    kind: Literal["merchant", "market"]
    strength: float = Field(description="|evidence| / threshold: 1 or more means the rule fired.")
    summary: str
    evidence: list[str]
    consistent_with_funnel: bool | None = Field(
        None, description="Whether the decomposition moved the way this cause predicts (null: not enough data)."
    )
    funnel_channel: str | None = Field(
        None, description="The part this cause moves: conversion (CTR + CVR) or live_stream traffic."
    )
    channel_vs_peers: Interval | None = Field(
        None,
        description="Interval of the merchant's log change of that part's ratio minus its peers' (orders per "
        "impression for conversion, impressions per day for live_stream traffic), over the same resampled days.",
    )
    distinguishable_from_noise: bool | None = Field(
        None, description="Whether that part moved the predicted way beyond its interval (merchant findings)."
    )


class GroupContribution(BaseModel):
    """Mean SHAP contribution (log-odds) of a feature group to the model's score."""

    group: str
    merchant: float
    reference: float
    gap: float = Field(description="merchant - reference.")


class ModelExplanation(BaseModel):
    head: str = Field(description="ctr or cvr head of the ranking model.")
    model_name: str
    model_version: str
    comparison: Literal["merchant_vs_peers", "period_b_vs_period_a"]
    rows_merchant: int
    rows_reference: int
    mean_score_merchant: float = Field(description="Mean predicted probability on the merchant's rows.")
    mean_score_reference: float
    groups: list[GroupContribution] = Field(description="Sorted by |gap|; the gaps add up to the logit gap.")
    summary: str


class DiagnosisReport(BaseModel):
    merchant_id: str
    main_category_l1: str
    merchant_tier: str | None
    period_a: Period
    period_b: Period
    data_start_date: date
    data_end_date: date
    peers: int = Field(description="Other merchants of the same main category used as reference.")
    funnel_a: FunnelTotals
    funnel_b: FunnelTotals
    decomposition: Decomposition
    evidence: list[Evidence]
    findings: list[Finding] = Field(description="Rules that fired, strongest first.")
    primary_cause: Cause | Literal["no_clear_cause", "within_noise"] = Field(
        description="The strongest merchant finding whose funnel part moved beyond noise; within_noise when the "
        "funnel change is not distinguishable from noise; no_clear_cause when it is but no lever explains it."
    )
    funnel_source: Literal["panel", "events"] = "events"
    campaign_days_a: int
    campaign_days_b: int
    model_explanations: list[ModelExplanation]
    notes: list[str]
    summary: str


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_id: MerchantId


class ForecastResponse(BaseModel):
    merchant_id: str
    model_name: str
    model_version: str
    as_of: date = Field(description="Last day of the features used: the forecast covers the 7 days after it.")
    horizon_start: date
    horizon_end: date
    gmv_7d: float = Field(description="Forecast GMV (USD) of the 7 days: the median (the WAPE-optimal point).")
    gmv_7d_low: float = Field(description="10% quantile.")
    gmv_7d_high: float = Field(description="90% quantile.")
    seasonal_naive_gmv_7d: float = Field(description="The same 7 weekdays of the last week (baseline).")
    campaign_days_ahead: int
    mega_days_ahead: int
    feature_source: Literal["online", "offline"]

    @field_validator("gmv_7d", "gmv_7d_low", "gmv_7d_high", "seasonal_naive_gmv_7d")
    @classmethod
    def _rounded(cls, value: float) -> float:
        return round(float(value), 2)
