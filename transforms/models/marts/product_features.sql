-- Product features per product per feature_date D (dense), knowable at the end of D, true from
-- D + 1 day 00:00 UTC. CTR and CVR are smoothed toward the global rate of the same window (see YAML).
{%- set ctr_strength = var('product_ctr_prior_strength') %}
{%- set cvr_strength = var('product_cvr_prior_strength') %}

with product_rolling as (
    select * from {{ ref('int_product_rolling') }}
),

product_prices as (
    select product_id, feature_date, price, discount_pct, price_rel_category
    from {{ ref('int_product_prices_daily') }}
),

products as (
    select product_id, merchant_id, category_l1, {{ utc_date('created_ts') }} as created_date
    from {{ ref('stg_products') }}
),

global_rates as (
    select
        feature_date,
        sum(clicks_7d) / nullif(sum(impressions_7d), 0) as ctr_7d_prior,
        sum(orders_30d) / nullif(sum(clicks_30d), 0) as cvr_30d_prior
    from product_rolling
    group by feature_date
)

select
    product_rolling.product_id,
    {{ feature_event_timestamp('product_rolling.feature_date') }} as event_timestamp,
    product_rolling.feature_date,
    {{ feature_event_timestamp('product_rolling.feature_date') }} as created_timestamp,
    products.merchant_id,
    products.category_l1,
    product_prices.price,
    product_prices.discount_pct,
    product_prices.price_rel_category,
    product_rolling.impressions_7d as product_impressions_7d,
    product_rolling.clicks_7d as product_clicks_7d,
    {{ smoothed_rate('product_rolling.clicks_7d', 'product_rolling.impressions_7d',
                     'global_rates.ctr_7d_prior', ctr_strength) }} as product_ctr_7d,
    product_rolling.impressions_30d as product_impressions_30d,
    product_rolling.clicks_30d as product_clicks_30d,
    product_rolling.orders_30d as product_orders_30d,
    {{ smoothed_rate('product_rolling.orders_30d', 'product_rolling.clicks_30d',
                     'global_rates.cvr_30d_prior', cvr_strength) }} as product_cvr_30d,
    product_rolling.gmv_30d as product_gmv_30d,
    cast(greatest({{ days_diff('product_rolling.feature_date', 'products.created_date') }}, 0) as bigint)
        as product_age_days
from product_rolling
inner join products on product_rolling.product_id = products.product_id
inner join product_prices
    on product_rolling.product_id = product_prices.product_id
    and product_rolling.feature_date = product_prices.feature_date
inner join global_rates on product_rolling.feature_date = global_rates.feature_date
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by product_rolling.product_id, product_rolling.feature_date
