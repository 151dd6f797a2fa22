-- The platform's published plan for a product's day D (issue 18, section 4): the day's kind from the campaign
-- calendar (normal 0, campaign 1, mega sale 2) and the price and discount the product is listed at on D (the
-- day's price list, which lands minutes after D 00:00 UTC). Unlike product_features (D's row true from D + 1),
-- a plan row describes the day it is used on, so it is true from the instant everything in it was known:
-- event_timestamp = greatest(D 00:00 UTC, the price row's landing), to the microsecond. A price row landing after
-- its day is over is no plan: it is left out, never back-dated. The calendar itself is public long ahead (the
-- double days, 11.11 and paydays follow a published rule; impression_labels.is_campaign_day and mg_campaign_plan
-- read it the same way), so its dimension snapshot's landing time does not gate it.
with prices as (
    select product_id, price_date, price, discount_pct, _ingested_at
    from {{ ref('stg_product_prices') }}
),

products as (
    select product_id, base_price
    from {{ ref('stg_products') }}
),

campaign_days as (
    select calendar_date, is_mega_sale
    from {{ ref('int_campaign_days') }}
),

plans as (
    select
        prices.product_id,
        prices.price_date as plan_date,
        greatest({{ day_start_timestamp('prices.price_date') }}, prices._ingested_at) as known_at,
        cast(case
            when campaign_days.calendar_date is null then 0
            when campaign_days.is_mega_sale then 2
            else 1
        end as bigint) as plan_day_kind,
        prices.discount_pct as plan_discount_pct,
        prices.price as plan_price,
        prices.price / products.base_price as plan_price_rel_base
    from prices
    inner join products on prices.product_id = products.product_id
    left join campaign_days on prices.price_date = campaign_days.calendar_date
)

select
    product_id,
    known_at as event_timestamp,
    plan_date,
    known_at as created_timestamp,
    plan_day_kind,
    plan_discount_pct,
    plan_price,
    plan_price_rel_base
from plans
where known_at < {{ feature_event_timestamp('plan_date') }}
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by product_id, plan_date
