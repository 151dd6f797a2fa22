"""The platform's published campaign plan as features (issue 18, section 4; docs/models.md).

A marketplace publishes its campaign calendar months ahead and each day's price list (the discounts merchants
registered for the campaign) as the day starts. product_features carries yesterday's price (its row for D is
true from D + 1), so on 11.11 a model reading only it sees the discounts of 11.10; this view carries the day's
own plan, each row true from the instant it was known (dbt mart product_campaign_plan), so the point-in-time
join never hands an impression a plan that landed after it.
"""

from datetime import timedelta

from data_sources import product_campaign_plan_source
from entities import OWNER, product
from feast import FeatureView, Field
from feast.types import Float64, Int64

# The plan of D is superseded by the plan of D + 1 minutes after midnight; two days, as for the daily views,
# so a stopped price feed shows up as missing values instead of an old plan served for long.
PLAN_TTL = timedelta(days=2)

product_campaign_plan = FeatureView(
    name="product_campaign_plan",
    entities=[product],
    ttl=PLAN_TTL,
    schema=[
        Field(
            name="plan_day_kind",
            dtype=Int64,
            description="Kind of the plan's day from the published calendar: 0 ordinary, 1 campaign, 2 mega sale.",
        ),
        Field(name="plan_discount_pct", dtype=Float64, description="The product's discount on the plan's day."),
        Field(name="plan_price", dtype=Float64, description="The product's shown price on the plan's day (USD)."),
        Field(
            name="plan_price_rel_base",
            dtype=Float64,
            description="The plan's price / the product's catalogue base price: how deep the day's cut is.",
        ),
    ],
    source=product_campaign_plan_source,
    online=True,
    description="The day's published campaign plan of a product, true from the instant it landed.",
    owner=OWNER,
    tags={"team": "ranking", "grain": "product x day", "known": "at landing, to the second"},
)
