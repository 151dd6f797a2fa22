-- Features of the next-7-day GMV forecast, per merchant per feature_date D (dense), knowable at the end of D
-- and true from D + 1 day 00:00 UTC, like every feature mart (docs/data_contracts.md section 3):
-- activity windows by known date over D-N+1 .. D, the merchant's price, discount, rating and live status,
-- and the campaign plan of the 7 and 28 days behind D and of the 7 days ahead (D+1 .. D+7), which is a
-- plan known in advance. Also the source of the price and live evidence of the diagnostics.
{%- set mg_dir = env_var('SHOPRANK_HOME') ~ '/merchant_growth' %}
{{ config(
    materialized='external',
    location=mg_dir ~ '/mg_merchant_forecast_features.parquet',
    pre_hook=ensure_dir(mg_dir)
) }}

with activity as (
    {{ rolling_activity('int_merchant_days', 'int_merchant_activity_daily', ['merchant_id'],
        windows={1: ['gmv'], 7: ['impressions', 'clicks', 'orders', 'gmv'], 14: ['gmv'],
                 28: ['impressions', 'clicks', 'orders', 'gmv']}) }}
),

status as (
    select
        merchant_id,
        feature_date,
        {{ exact_avg('rating', over='w7') }} as rating_7d,
        {{ exact_avg('rating', over='w28') }} as rating_28d,
        cast(sum(is_live) over w7 as bigint) as live_days_7d,
        cast(sum(is_live) over w28 as bigint) as live_days_28d,
        cast(count(*) over w28 as bigint) as days_observed_28d
    from {{ ref('int_merchant_status_daily') }}
    window
        w7 as (partition by merchant_id order by feature_date range between interval 6 days preceding and current row),
        w28 as (partition by merchant_id order by feature_date range between interval 27 days preceding and current row)
),

product_prices as (
    select
        products.merchant_id,
        prices.feature_date,
        -- list price (before the day's discount) relative to the catalogue price at listing
        {{ exact_avg('prices.price / (1.0 - prices.discount_pct) / nullif(products.base_price, 0)') }}
            as list_price_index,
        {{ exact_avg('prices.discount_pct') }} as discount_avg
    from {{ ref('int_product_prices_daily') }} as prices
    inner join {{ ref('stg_products') }} as products on prices.product_id = products.product_id
    group by products.merchant_id, prices.feature_date
),

plan as (
    select
        plan_date,
        cast(sum(is_campaign_day) over last7 as bigint) as campaign_days_last7,
        cast(sum(is_mega_sale) over last7 as bigint) as mega_days_last7,
        cast(sum(is_campaign_day) over last28 as bigint) as campaign_days_last28,
        cast(sum(is_mega_sale) over last28 as bigint) as mega_days_last28,
        cast(sum(is_campaign_day) over next7 as bigint) as campaign_days_next7,
        cast(sum(is_mega_sale) over next7 as bigint) as mega_days_next7
    from {{ ref('mg_campaign_plan') }}
    window
        last7 as (order by plan_date range between interval 6 days preceding and current row),
        last28 as (order by plan_date range between interval 27 days preceding and current row),
        next7 as (order by plan_date range between interval 1 day following and interval 7 days following)
)

select
    activity.merchant_id,
    {{ feature_event_timestamp('activity.feature_date') }} as event_timestamp,
    activity.feature_date,
    {{ feature_event_timestamp('activity.feature_date') }} as created_timestamp,
    activity.gmv_1d as mg_gmv_1d,
    activity.gmv_7d as mg_gmv_7d,
    activity.gmv_14d as mg_gmv_14d,
    activity.gmv_28d as mg_gmv_28d,
    activity.orders_7d as mg_orders_7d,
    activity.orders_28d as mg_orders_28d,
    activity.clicks_7d as mg_clicks_7d,
    activity.clicks_28d as mg_clicks_28d,
    activity.impressions_7d as mg_impressions_7d,
    activity.impressions_28d as mg_impressions_28d,
    status.days_observed_28d as mg_days_observed_28d,
    product_prices.list_price_index as mg_list_price_index,
    product_prices.discount_avg as mg_discount_avg,
    status.rating_7d as mg_rating_7d,
    status.rating_28d as mg_rating_28d,
    status.live_days_7d as mg_live_days_7d,
    status.live_days_28d as mg_live_days_28d,
    plan.campaign_days_last7 as mg_campaign_days_last7,
    plan.mega_days_last7 as mg_mega_days_last7,
    plan.campaign_days_last28 as mg_campaign_days_last28,
    plan.mega_days_last28 as mg_mega_days_last28,
    plan.campaign_days_next7 as mg_campaign_days_next7,
    plan.mega_days_next7 as mg_mega_days_next7
from activity
inner join status
    on activity.merchant_id = status.merchant_id
    and activity.feature_date = status.feature_date
inner join plan on activity.feature_date = plan.plan_date
left join product_prices
    on activity.merchant_id = product_prices.merchant_id
    and activity.feature_date = product_prices.feature_date
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by activity.merchant_id, activity.feature_date
