-- One row per valid impression up to the last day of the data, with its context and outcome labels:
-- clicked (it has a valid click), converted (it has a valid order), order_gmv (sum of its orders' gmv).
with impressions as (
    select impression_id, request_id, event_ts, user_id, product_id, surface, position
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
    select impression_id, {{ exact_sum('gmv') }} as order_gmv
    from {{ ref('stg_orders') }}
    group by impression_id
),

campaign_days as (
    select calendar_date, campaign_name
    from {{ ref('int_campaign_days') }}
),

data_bounds as (
    select data_end_date from {{ ref('int_data_bounds') }}
),

labelled_impressions as (
    select
        impressions.impression_id,
        impressions.request_id,
        impressions.event_ts as event_timestamp,
        {{ utc_date('impressions.event_ts') }} as feature_date,
        impressions.user_id,
        impressions.product_id,
        products.merchant_id,
        products.category_l1,
        impressions.surface,
        cast(impressions.position as bigint) as position,
        {{ utc_hour('impressions.event_ts') }} as hour_of_day,
        cast(campaign_days.calendar_date is not null as bigint) as is_campaign_day,
        coalesce(campaign_days.campaign_name, 'none') as campaign_name,
        cast(clicked_impressions.impression_id is not null as bigint) as clicked,
        cast(impression_orders.impression_id is not null as bigint) as converted,
        coalesce(impression_orders.order_gmv, 0.0) as order_gmv
    from impressions
    inner join products on impressions.product_id = products.product_id
    left join clicked_impressions on impressions.impression_id = clicked_impressions.impression_id
    left join impression_orders on impressions.impression_id = impression_orders.impression_id
    left join campaign_days on {{ utc_date('impressions.event_ts') }} = campaign_days.calendar_date
)

select labelled_impressions.*
from labelled_impressions
cross join data_bounds
where labelled_impressions.feature_date <= data_bounds.data_end_date
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by labelled_impressions.event_timestamp, labelled_impressions.impression_id
