"""Merchant growth: the features of the next-7-day merchant GMV forecast (merchant_growth/forecasting.py).

The source is the dbt mart `mg_merchant_forecast_features` (transforms/models/marts/merchant_growth/), exported
outside the ranker's marts folder to $SHOPRANK_HOME/merchant_growth/ so the ranker's mart contract is unchanged.
Same time semantics as every other view: the row of day D is true from D + 1 day 00:00 UTC; the TTL is that of
daily behaviour (a row older than two days means the batch stopped).
"""

from datetime import timedelta

from data_sources import parquet_source
from entities import merchant
from feast import FeatureService, FeatureView, Field
from feast.types import Float64, Int64
from features import merchant_features

from platform_common.settings import get_settings

MG_OWNER = "merchant-growth@shoprank.dev"
MG_DIR = get_settings().home_dir / "merchant_growth"
DAILY_TTL = timedelta(days=2)

merchant_forecast_source = parquet_source(
    "mg_merchant_forecast_features_source",
    MG_DIR / "mg_merchant_forecast_features.parquet",
    "Daily GMV windows, price, rating, live and campaign-plan features of each merchant.",
    MG_OWNER,
    {"producer": "dbt", "mart": "mg_merchant_forecast_features"},
)


def _count(name: str, description: str) -> Field:
    return Field(name=name, dtype=Int64, description=description)


def _value(name: str, description: str) -> Field:
    return Field(name=name, dtype=Float64, description=description)


merchant_forecast_features = FeatureView(
    name="merchant_forecast_features",
    entities=[merchant],
    ttl=DAILY_TTL,
    schema=[
        _value("mg_gmv_1d", "GMV (USD) of the merchant's orders known on D."),
        _value("mg_gmv_7d", "GMV known in D-6 .. D: also the seasonal-naive forecast of the next 7 days."),
        _value("mg_gmv_14d", "GMV known in D-13 .. D."),
        _value("mg_gmv_28d", "GMV known in D-27 .. D."),
        _count("mg_orders_7d", "Orders known in D-6 .. D."),
        _count("mg_orders_28d", "Orders known in D-27 .. D."),
        _count("mg_clicks_7d", "Clicks known in D-6 .. D."),
        _count("mg_clicks_28d", "Clicks known in D-27 .. D."),
        _count("mg_impressions_7d", "Impressions known in D-6 .. D."),
        _count("mg_impressions_28d", "Impressions known in D-27 .. D."),
        _count("mg_days_observed_28d", "Days of the merchant's history inside the 28-day window (1 to 28)."),
        _value("mg_list_price_index", "Mean list price / catalogue price at listing of its products on D."),
        _value("mg_discount_avg", "Mean discount of its products on D."),
        _value("mg_rating_7d", "Mean daily rating over D-6 .. D."),
        _value("mg_rating_28d", "Mean daily rating over D-27 .. D."),
        _count("mg_live_days_7d", "Days it live-streamed in D-6 .. D."),
        _count("mg_live_days_28d", "Days it live-streamed in D-27 .. D."),
        _count("mg_campaign_days_last7", "Campaign days in D-6 .. D."),
        _count("mg_mega_days_last7", "Mega sale days in D-6 .. D."),
        _count("mg_campaign_days_last28", "Campaign days in D-27 .. D."),
        _count("mg_mega_days_last28", "Mega sale days in D-27 .. D."),
        _count("mg_campaign_days_next7", "Campaign days planned in D+1 .. D+7 (the forecast horizon)."),
        _count("mg_mega_days_next7", "Mega sale days planned in D+1 .. D+7."),
    ],
    source=merchant_forecast_source,
    online=True,
    description="Recent GMV, levers (price, rating, live) and the campaign plan of a seller, for GMV forecasts.",
    owner=MG_OWNER,
    tags={"team": "merchant-growth", "grain": "merchant x day"},
)

merchant_forecast_v1 = FeatureService(
    name="merchant_forecast_v1",
    features=[merchant_forecast_features, merchant_features],
    description="Features of the next-7-day merchant GMV forecast (merchant_growth.forecasting).",
    owner=MG_OWNER,
    tags={"model": "merchant_forecast", "version": "1"},
)
