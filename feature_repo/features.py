"""Feature views over the dbt marts.

Every mart row for day D carries event_timestamp = D+1 00:00 UTC (the moment it became knowable). TTLs are
deliberate: behaviour rolls daily, so a row older than two days means the daily batch stopped and the value
is treated as missing rather than served stale; merchant attributes move slowly, so a week is tolerated.
See docs/time_semantics.md.
"""

from datetime import timedelta

from data_sources import (
    merchant_features_source,
    product_features_source,
    user_category_features_source,
    user_features_source,
)
from entities import OWNER, category, merchant, product, user
from feast import FeatureView, Field
from feast.types import Float64, Int64, String

DAILY_TTL = timedelta(days=2)
SLOW_TTL = timedelta(days=7)

user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=DAILY_TTL,
    schema=[
        Field(name="country", dtype=String, description="Country of the user's account."),
        Field(name="device", dtype=String, description="Main device: android, ios or web."),
        Field(name="user_impressions_7d", dtype=Int64),
        Field(name="user_clicks_7d", dtype=Int64),
        Field(name="user_ctr_7d", dtype=Float64, description="Clicks / impressions over 7 days, 0 if none."),
        Field(name="user_impressions_30d", dtype=Int64),
        Field(name="user_clicks_30d", dtype=Int64),
        Field(name="user_ctr_30d", dtype=Float64),
        Field(name="user_orders_30d", dtype=Int64),
        Field(name="user_spend_30d", dtype=Float64, description="GMV the user paid over 30 days (USD)."),
        Field(name="user_days_since_signup", dtype=Int64),
        Field(
            name="user_clicked_log_price_rel_30d",
            dtype=Float64,
            description="Mean ln(price / category median) of the products the user clicked over 30 days.",
        ),
        Field(
            name="user_price_lift_30d",
            dtype=Float64,
            description="Clicked minus shown mean log relative price over 30 days: revealed price sensitivity.",
        ),
    ],
    source=user_features_source,
    online=True,
    description="Rolling engagement of a shopper, knowable at the end of each day.",
    owner=OWNER,
    tags={"team": "ranking", "grain": "user x day"},
)

user_category_features = FeatureView(
    name="user_category_features",
    entities=[user, category],
    ttl=DAILY_TTL,
    schema=[
        Field(name="uc_impressions_30d", dtype=Int64),
        Field(name="uc_clicks_30d", dtype=Int64),
        Field(name="uc_orders_30d", dtype=Int64),
        Field(
            name="uc_click_share_30d",
            dtype=Float64,
            description="Share of the user's 30-day clicks that went to this category: revealed taste.",
        ),
    ],
    source=user_category_features_source,
    online=True,
    description="A shopper's revealed taste for each top-level category.",
    owner=OWNER,
    tags={"team": "ranking", "grain": "user x category x day"},
)

product_features = FeatureView(
    name="product_features",
    entities=[product],
    ttl=DAILY_TTL,
    schema=[
        Field(name="product_merchant_id", dtype=String, description="Seller, used to look up merchant features."),
        Field(name="product_category_l1", dtype=String, description="Category, used to look up user taste."),
        Field(name="price", dtype=Float64),
        Field(name="discount_pct", dtype=Float64),
        Field(name="price_rel_category", dtype=Float64, description="Price / category median that day."),
        Field(name="product_impressions_7d", dtype=Int64),
        Field(name="product_clicks_7d", dtype=Int64),
        Field(name="product_ctr_7d", dtype=Float64, description="Empirical-Bayes smoothed 7-day CTR."),
        Field(name="product_impressions_30d", dtype=Int64),
        Field(name="product_clicks_30d", dtype=Int64),
        Field(name="product_orders_30d", dtype=Int64),
        Field(name="product_cvr_30d", dtype=Float64, description="Empirical-Bayes smoothed 30-day CVR."),
        Field(name="product_gmv_30d", dtype=Float64),
        Field(name="product_age_days", dtype=Int64),
    ],
    source=product_features_source,
    online=True,
    description="Price and rolling funnel of a product.",
    owner=OWNER,
    tags={"team": "ranking", "grain": "product x day"},
)

merchant_features = FeatureView(
    name="merchant_features",
    entities=[merchant],
    ttl=SLOW_TTL,
    schema=[
        Field(name="merchant_tier", dtype=String, description="mall, preferred or regular."),
        Field(name="merchant_rating", dtype=Float64),
        Field(name="merchant_is_live", dtype=Int64, description="1 if the merchant live-streamed that day."),
        Field(name="merchant_gmv_7d", dtype=Float64),
        Field(name="merchant_gmv_30d", dtype=Float64),
        Field(name="merchant_orders_30d", dtype=Int64),
        Field(name="merchant_ctr_30d", dtype=Float64),
        Field(name="merchant_cvr_30d", dtype=Float64),
        Field(name="merchant_product_count", dtype=Int64),
        Field(name="merchant_age_days", dtype=Int64, description="Days since the merchant joined."),
    ],
    source=merchant_features_source,
    online=True,
    description="Reputation and rolling GMV of a seller.",
    owner=OWNER,
    tags={"team": "merchant-growth", "grain": "merchant x day"},
)
