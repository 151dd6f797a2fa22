"""Monitoring thresholds: YAML on disk, a frozen pydantic model in code, validated at the edge.

A bad file is one line naming the field (`ThresholdError`), never a stack trace. Every threshold is documented
here and in the README's monitoring section; the defaults are in serving/monitoring/thresholds.yml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_PATH = Path(__file__).with_name("thresholds.yml")


class ThresholdError(ValueError):
    """A thresholds file that cannot be used; the message is one line naming the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataQuality(_Frozen):
    landing_freshness_alert: Literal["warn", "error"] = Field(
        "warn",
        description="dbt source freshness status that alerts: 'warn' (past warn_after) or only 'error'. The "
        "per-table thresholds are dbt's own, in transforms/models/staging/_sources.yml.",
    )
    quarantine_share: float = Field(0.05, gt=0, le=1, description="Quarantined share per table and reason.")
    row_count_min_ratio: float = Field(
        0.4, gt=0, lt=1, description="Rows landed in the window / median of the same day count over the baseline."
    )
    row_count_max_ratio: float = Field(4.0, gt=1, description="Upper bound of that ratio (campaign days reach ~2.5).")
    baseline_days: int = Field(7, ge=2, le=60, description="Days before the window that make the norm.")
    min_rows: int = Field(50, ge=1, description="Below this many rows a count ratio or a share is noise: not judged.")
    price_shift: float = Field(
        0.25, gt=0, description="|log| change of a category's median shown price vs its baseline median."
    )


class Drift(_Frozen):
    psi_warn: float = Field(0.1, gt=0, description="PSI that is reported (not alerted): a moderate shift.")
    psi_alert: float = Field(0.25, gt=0, description="PSI that alerts: the usual 'significant shift' cut.")
    served_psi_alert: float = Field(
        0.25,
        gt=0,
        description="PSI of a served feature vs the version's served baseline (its first served rows) that alerts.",
    )
    baseline_rows: int = Field(
        5000, ge=100, description="Served rows (whole requests) of a version frozen as its served baseline."
    )
    served_min_rows: int = Field(
        2000,
        ge=10,
        description="Served rows after the baseline needed to judge served drift: a request's candidates share "
        "its user's features, so the rows are clustered (~9 a request at SCALE=tiny) and PSI's noise is larger.",
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of a numeric feature's reference profile.")
    min_rows: int = Field(200, ge=10, description="Fewer rows than this in a window: drift is not judged.")
    lost_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of a feature's non-zero (or non-null) values that vanished vs its reference: 1 - "
        "current / reference share. 1.0 is a column written as zero (or null); features under 5% non-zero are "
        "not judged on zeros.",
    )


class Features(_Frozen):
    missing_share: float = Field(0.2, gt=0, le=1, description="Served candidate rows without a view's features.")
    stale_share: float = Field(0.1, gt=0, le=1, description="Served requests with a view past its TTL.")
    skew_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of sampled served rows whose value of a feature differs from Feast's offline store at the "
        "served time (training-serving skew); 0 on a clean platform.",
    )
    skew_sample_rows: int = Field(2000, ge=10, description="Logged rows per window looked up in the offline store.")


class Freshness(_Frozen):
    view_sla_hours: dict[str, float] = Field(
        default_factory=lambda: {"default": 30.0, "user_stream_features": 1.0, "product_stream_features": 2.0},
        description="Newest materialized (stream views: pushed) row per view may be this old at the window end; "
        "'default' for the rest.",
    )

    def sla(self, view: str) -> float:
        return self.view_sla_hours.get(view, self.view_sla_hours.get("default", 30.0))


class ModelQuality(_Frozen):
    click_delay_hours: float = Field(
        1.0, ge=0, description="A day's CTR is scored this long after it ends (clicks land seconds after the slot)."
    )
    order_delay_hours: float = Field(
        24.0,
        ge=0,
        description="A day's CVR and GMV are scored this long after it ends: the attribution window of orders "
        "(median 25 min after the click, 99.9% within 24 h in the simulator).",
    )
    lookback_days: int = Field(
        1, ge=0, le=7, description="Days before the window in the online table: the daily run scores D-1's orders."
    )
    min_impressions: int = Field(
        1000, ge=10, description="Matured impressions per surface below this: not judged (ECE noise ~0.02 at 900)."
    )
    ece_max: float = Field(0.03, gt=0, description="Online CTR calibration error (ECE, 10 quantile bins).")
    ctr_ratio_max: float = Field(
        2.5,
        gt=1,
        description="Predicted / realised CTR above this (or below 1/this); clean tiny live runs: 1.3-2.1.",
    )
    auc_min: float = Field(0.55, gt=0, lt=1, description="Online CTR AUC below this.")
    min_orders: float = Field(
        30.0, gt=0, description="Orders the model predicts for a group below this: CVR and GMV ratios not judged."
    )
    cvr_ratio_max: float = Field(
        2.0, gt=1, description="Predicted / realised post-click CVR above this (or below 1/this)."
    )
    gmv_ratio_max: float = Field(2.0, gt=1, description="Predicted / realised GMV above this (or below 1/this).")
    score_psi_alert: float = Field(0.25, gt=0, description="PSI of served pCTR vs the training reference.")


class Thresholds(_Frozen):
    data_quality: DataQuality = DataQuality()
    drift: Drift = Drift()
    features: Features = Features()
    freshness: Freshness = Freshness()
    model_quality: ModelQuality = ModelQuality()


def load_thresholds(path: Path | None = None) -> Thresholds:
    path = path or DEFAULT_PATH
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ThresholdError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ThresholdError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ThresholdError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Thresholds.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ThresholdError(f"{path}: {field}: {err['msg']} (got {err.get('input')!r})") from None
