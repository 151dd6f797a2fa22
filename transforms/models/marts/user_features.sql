-- User features per user per feature_date D (dense), knowable at the end of D, true from D + 1 day 00:00 UTC.
with user_rolling as (
    select * from {{ ref('int_user_rolling') }}
),

users as (
    select user_id, country, device, {{ utc_date('signup_ts') }} as signup_date
    from {{ ref('stg_users') }}
)

select
    user_rolling.user_id,
    {{ feature_event_timestamp('user_rolling.feature_date') }} as event_timestamp,
    user_rolling.feature_date,
    {{ feature_event_timestamp('user_rolling.feature_date') }} as created_timestamp,
    users.country,
    users.device,
    user_rolling.impressions_7d as user_impressions_7d,
    user_rolling.clicks_7d as user_clicks_7d,
    {{ safe_rate('user_rolling.clicks_7d', 'user_rolling.impressions_7d') }} as user_ctr_7d,
    user_rolling.impressions_30d as user_impressions_30d,
    user_rolling.clicks_30d as user_clicks_30d,
    {{ safe_rate('user_rolling.clicks_30d', 'user_rolling.impressions_30d') }} as user_ctr_30d,
    user_rolling.orders_30d as user_orders_30d,
    user_rolling.gmv_30d as user_spend_30d,
    cast(greatest({{ days_diff('user_rolling.feature_date', 'users.signup_date') }}, 0) as bigint)
        as user_days_since_signup,
    {{ safe_rate('user_rolling.clicked_log_price_rel_sum_30d', 'user_rolling.priced_clicks_30d') }}
        as user_clicked_log_price_rel_30d,
    case
        when user_rolling.priced_clicks_30d > 0 and user_rolling.priced_impressions_30d > 0
            then
                user_rolling.clicked_log_price_rel_sum_30d / user_rolling.priced_clicks_30d
                - user_rolling.impressed_log_price_rel_sum_30d / user_rolling.priced_impressions_30d
        else 0.0
    end as user_price_lift_30d
from user_rolling
inner join users on user_rolling.user_id = users.user_id
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by user_rolling.user_id, user_rolling.feature_date
