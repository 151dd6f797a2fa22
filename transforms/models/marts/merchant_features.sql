-- Merchant features per merchant per feature_date D (dense), knowable at the end of D, true from
-- D + 1 day 00:00 UTC.
with merchant_rolling as (
    select * from {{ ref('int_merchant_rolling') }}
),

merchant_status as (
    select merchant_id, feature_date, rating, is_live, product_count
    from {{ ref('int_merchant_status_daily') }}
),

merchants as (
    select merchant_id, tier, {{ utc_date('joined_ts') }} as joined_date
    from {{ ref('stg_merchants') }}
)

select
    merchant_rolling.merchant_id,
    {{ feature_event_timestamp('merchant_rolling.feature_date') }} as event_timestamp,
    merchant_rolling.feature_date,
    {{ feature_event_timestamp('merchant_rolling.feature_date') }} as created_timestamp,
    merchants.tier as merchant_tier,
    merchant_status.rating as merchant_rating,
    merchant_status.is_live as merchant_is_live,
    merchant_rolling.gmv_7d as merchant_gmv_7d,
    merchant_rolling.gmv_30d as merchant_gmv_30d,
    merchant_rolling.orders_30d as merchant_orders_30d,
    {{ safe_rate('merchant_rolling.clicks_30d', 'merchant_rolling.impressions_30d') }} as merchant_ctr_30d,
    {{ safe_rate('merchant_rolling.orders_30d', 'merchant_rolling.clicks_30d') }} as merchant_cvr_30d,
    merchant_status.product_count as merchant_product_count,
    cast(greatest({{ days_diff('merchant_rolling.feature_date', 'merchants.joined_date') }}, 0) as bigint)
        as merchant_age_days
from merchant_rolling
inner join merchants on merchant_rolling.merchant_id = merchants.merchant_id
inner join merchant_status
    on merchant_rolling.merchant_id = merchant_status.merchant_id
    and merchant_rolling.feature_date = merchant_status.feature_date
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by merchant_rolling.merchant_id, merchant_rolling.feature_date
