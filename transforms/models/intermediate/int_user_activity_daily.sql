-- Activity per user_id per known date (the day each event became knowable), with the log relative price
-- (price / category median, of the day the event happened) summed over the impressions and clicks that have
-- one: what a user clicks against what the user is shown reveals how price-sensitive the user is.
with events as (
    select * from {{ ref('int_events_known') }}
),

-- The price of day D is knowable at the end of D, and an event of day D is known on D or later.
product_day_prices as (
    select product_id, feature_date, ln(price_rel_category) as log_price_rel
    from {{ ref('int_product_prices_daily') }}
),

events_priced as (
    select events.*, product_day_prices.log_price_rel
    from events
    left join product_day_prices
        on events.product_id = product_day_prices.product_id
        and {{ utc_date('events.event_ts') }} = product_day_prices.feature_date
)

select
    user_id,
    known_date,
    {{ daily_activity_measures() }},
    count(log_price_rel) filter (where event_type = 'impression') as priced_impressions,
    count(log_price_rel) filter (where event_type = 'click') as priced_clicks,
    coalesce({{ exact_sum('log_price_rel', filter="event_type = 'impression'") }}, 0.0) as impressed_log_price_rel_sum,
    coalesce({{ exact_sum('log_price_rel', filter="event_type = 'click'") }}, 0.0) as clicked_log_price_rel_sum
from events_priced
group by user_id, known_date
