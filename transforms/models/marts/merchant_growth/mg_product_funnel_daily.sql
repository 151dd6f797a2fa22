-- GMV funnel per product x day x surface (sparse: only the product-days-surfaces with impressions),
-- attributed by impression like mg_merchant_funnel_daily, which sums these rows per merchant.
{%- set mg_dir = env_var('SHOPRANK_HOME') ~ '/merchant_growth' %}
{{ config(
    materialized='external',
    location=mg_dir ~ '/mg_product_funnel_daily.parquet',
    pre_hook=ensure_dir(mg_dir)
) }}

with impressions as (
    select impression_id, {{ utc_date('event_ts') }} as activity_date, product_id, surface
    from {{ ref('stg_impressions') }}
),

products as (
    select product_id, merchant_id, category_l1
    from {{ ref('stg_products') }}
),

clicked_impressions as (
    select distinct impression_id
    from {{ ref('stg_clicks') }}
),

impression_orders as (
    select impression_id, count(*) as orders, {{ exact_sum('gmv') }} as gmv
    from {{ ref('stg_orders') }}
    group by impression_id
),

data_bounds as (
    select data_end_date from {{ ref('int_data_bounds') }}
),

known_impressions as (
    select impressions.*
    from impressions
    cross join data_bounds
    where impressions.activity_date <= data_bounds.data_end_date
),

-- Traffic and clicks, then orders, each aggregated on its own: one aggregate over every impression with all
-- four states (and the merchant's strings as keys) ran DuckDB out of memory at SCALE=large (9.8M groups, a
-- pinned block no spill could free); only the few impressions with an order carry order states.
traffic as (
    select
        known_impressions.product_id,
        known_impressions.activity_date,
        known_impressions.surface,
        count(*) as impressions,
        count(clicked_impressions.impression_id) as clicks
    from known_impressions
    left join clicked_impressions on known_impressions.impression_id = clicked_impressions.impression_id
    group by all
),

ordered as (
    select
        known_impressions.product_id,
        known_impressions.activity_date,
        known_impressions.surface,
        sum(impression_orders.orders) as orders,
        {{ exact_sum('impression_orders.gmv') }} as gmv
    from known_impressions
    inner join impression_orders on known_impressions.impression_id = impression_orders.impression_id
    group by all
),

funnel as (
    select
        traffic.product_id,
        products.merchant_id,
        products.category_l1,
        traffic.activity_date,
        traffic.surface,
        traffic.impressions,
        traffic.clicks,
        coalesce(ordered.orders, 0) as orders,
        coalesce(ordered.gmv, 0.0) as gmv
    from traffic
    inner join products on traffic.product_id = products.product_id
    left join ordered
        on traffic.product_id = ordered.product_id
        and traffic.activity_date = ordered.activity_date
        and traffic.surface = ordered.surface
)

select
    product_id,
    merchant_id,
    category_l1,
    activity_date,
    surface,
    cast(impressions as bigint) as impressions,
    cast(clicks as bigint) as clicks,
    cast(orders as bigint) as orders,
    cast(gmv as double) as gmv,
    {{ safe_rate('clicks', 'impressions') }} as ctr,
    {{ safe_rate('orders', 'clicks') }} as cvr,
    {{ safe_rate('gmv', 'orders') }} as aov
from funnel
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by product_id, activity_date, surface
