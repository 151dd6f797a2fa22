-- User x category features per feature_date D (dense from the pair's first activity), knowable at the
-- end of D, true from D + 1 day 00:00 UTC.
with user_category_rolling as (
    select user_id, category_l1, feature_date, impressions_30d, clicks_30d, orders_30d
    from {{ ref('int_user_category_rolling') }}
),

user_rolling as (
    select user_id, feature_date, clicks_30d
    from {{ ref('int_user_rolling') }}
)

select
    user_category_rolling.user_id,
    user_category_rolling.category_l1,
    {{ feature_event_timestamp('user_category_rolling.feature_date') }} as event_timestamp,
    user_category_rolling.feature_date,
    {{ feature_event_timestamp('user_category_rolling.feature_date') }} as created_timestamp,
    user_category_rolling.impressions_30d as uc_impressions_30d,
    user_category_rolling.clicks_30d as uc_clicks_30d,
    user_category_rolling.orders_30d as uc_orders_30d,
    {{ safe_rate('user_category_rolling.clicks_30d', 'user_rolling.clicks_30d') }} as uc_click_share_30d
from user_category_rolling
inner join user_rolling
    on user_category_rolling.user_id = user_rolling.user_id
    and user_category_rolling.feature_date = user_rolling.feature_date
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by
    user_category_rolling.user_id,
    user_category_rolling.category_l1,
    user_category_rolling.feature_date
