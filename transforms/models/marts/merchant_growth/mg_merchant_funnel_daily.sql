-- GMV funnel per merchant x day x surface: impressions -> clicks -> orders -> GMV, with CTR, CVR and
-- average order value. Attribution is by impression: a click and its orders count on the UTC day and the
-- surface of the impression they came from, so CTR = clicks / impressions, CVR = orders / clicks and
-- GMV = orders x AOV hold row by row. Dense: every merchant has one row per surface per day from joining
-- (or first impression, not before the data starts) to the last day of the data; quiet rows are zeros.
-- Rates are 0 when their denominator is 0. Orders still to come for the last day's clicks are not here.
{%- set mg_dir = env_var('SHOPRANK_HOME') ~ '/merchant_growth' %}
{{ config(
    materialized='external',
    location=mg_dir ~ '/mg_merchant_funnel_daily.parquet',
    pre_hook=ensure_dir(mg_dir)
) }}

with product_funnel as (
    select merchant_id, activity_date, surface, impressions, clicks, orders, gmv
    from {{ ref('mg_product_funnel_daily') }}
),

merchants as (
    select merchant_id, main_category_l1, {{ utc_date('joined_ts') }} as joined_date
    from {{ ref('stg_merchants') }}
),

data_bounds as (
    select data_start_date, data_end_date from {{ ref('int_data_bounds') }}
),

first_impressions as (
    select merchant_id, min(activity_date) as first_activity_date
    from product_funnel
    group by merchant_id
),

merchant_ranges as (
    select
        merchants.merchant_id,
        merchants.main_category_l1,
        greatest(
            data_bounds.data_start_date,
            least(merchants.joined_date, coalesce(first_impressions.first_activity_date, merchants.joined_date))
        ) as start_date,
        data_bounds.data_end_date as end_date
    from merchants
    left join first_impressions on merchants.merchant_id = first_impressions.merchant_id
    cross join data_bounds
),

merchant_days as (
    select merchant_id, main_category_l1, {{ days_between('start_date', 'end_date') }} as activity_date
    from merchant_ranges
),

surfaces as (
    select {{ unnest_strings(var('surfaces')) }} as surface
),

merchant_daily as (
    select
        merchant_id,
        activity_date,
        surface,
        sum(impressions) as impressions,
        sum(clicks) as clicks,
        sum(orders) as orders,
        {{ exact_sum('gmv') }} as gmv
    from product_funnel
    group by merchant_id, activity_date, surface
),

dense as (
    select
        merchant_days.merchant_id,
        merchant_days.main_category_l1,
        merchant_days.activity_date,
        surfaces.surface,
        cast(coalesce(merchant_daily.impressions, 0) as bigint) as impressions,
        cast(coalesce(merchant_daily.clicks, 0) as bigint) as clicks,
        cast(coalesce(merchant_daily.orders, 0) as bigint) as orders,
        cast(coalesce(merchant_daily.gmv, 0.0) as double) as gmv
    from merchant_days
    cross join surfaces
    left join merchant_daily
        on merchant_days.merchant_id = merchant_daily.merchant_id
        and merchant_days.activity_date = merchant_daily.activity_date
        and surfaces.surface = merchant_daily.surface
)

select
    merchant_id,
    main_category_l1,
    activity_date,
    surface,
    impressions,
    clicks,
    orders,
    gmv,
    {{ safe_rate('clicks', 'impressions') }} as ctr,
    {{ safe_rate('orders', 'clicks') }} as cvr,
    {{ safe_rate('gmv', 'orders') }} as aov
from dense
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by merchant_id, activity_date, surface
