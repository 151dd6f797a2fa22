"""Merchant growth: GMV funnel diagnostics and attribution, and next-7-day GMV forecasts, per merchant.

Public API (plain functions; an HTTP endpoint maps the errors with `errors.http_status`):

    diagnose(merchant_id, period_a, period_b, settings) -> DiagnosisReport
    forecast(merchant_id, settings) -> ForecastResponse
    plan(PlanRequest, settings) -> PlanResponse       (campaign what-if planner, merchant_growth/planner.py)

See docs/merchant_growth.md.
"""

from merchant_growth.diagnosis import diagnose, diagnose_request
from merchant_growth.errors import (
    InvalidPeriodError,
    MerchantGrowthError,
    NotReadyError,
    UnknownMerchantError,
    http_status,
)
from merchant_growth.forecasting import forecast, forecast_request
from merchant_growth.plan_schemas import PlanRequest, PlanResponse
from merchant_growth.planner import InvalidScenarioError, plan
from merchant_growth.schemas import (
    DiagnoseRequest,
    DiagnosisReport,
    ForecastRequest,
    ForecastResponse,
    Period,
)

__all__ = [
    "DiagnoseRequest",
    "DiagnosisReport",
    "ForecastRequest",
    "ForecastResponse",
    "InvalidPeriodError",
    "InvalidScenarioError",
    "MerchantGrowthError",
    "NotReadyError",
    "Period",
    "PlanRequest",
    "PlanResponse",
    "UnknownMerchantError",
    "diagnose",
    "diagnose_request",
    "forecast",
    "forecast_request",
    "http_status",
    "plan",
]
