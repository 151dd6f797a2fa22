-- Every valid impression, click and order with the day it became knowable,
-- known_date = date(greatest(event_ts, _ingested_at)) in UTC: a late event counts on its arrival day.
-- Events not knowable by the end of the data (known_date > data_end_date) are left out.
with impression_events as (
    select
        'impression' as event_type,
        impression_id as event_id,
        impression_id,
        user_id,
        product_id,
        event_ts,
        _ingested_at,
        0.0 as gmv
    from {{ ref('stg_impressions') }}
),

click_events as (
    select
        'click' as event_type,
        click_id as event_id,
        impression_id,
        user_id,
        product_id,
        event_ts,
        _ingested_at,
        0.0 as gmv
    from {{ ref('stg_clicks') }}
),

order_events as (
    select
        'order' as event_type,
        order_id as event_id,
        impression_id,
        user_id,
        product_id,
        event_ts,
        _ingested_at,
        gmv
    from {{ ref('stg_orders') }}
),

all_events as (
    select * from impression_events
    union all
    select * from click_events
    union all
    select * from order_events
),

products as (
    select product_id, merchant_id, category_l1
    from {{ ref('stg_products') }}
),

data_bounds as (
    select data_end_date from {{ ref('int_data_bounds') }}
),

events_with_known_date as (
    select
        all_events.event_type,
        all_events.event_id,
        all_events.impression_id,
        all_events.user_id,
        all_events.product_id,
        products.merchant_id,
        products.category_l1,
        all_events.event_ts,
        all_events._ingested_at,
        {{ known_date('all_events.event_ts', 'all_events._ingested_at') }} as known_date,
        cast(all_events.gmv as double) as gmv
    from all_events
    inner join products on all_events.product_id = products.product_id
)

select events_with_known_date.*
from events_with_known_date
cross join data_bounds
where events_with_known_date.known_date <= data_bounds.data_end_date
