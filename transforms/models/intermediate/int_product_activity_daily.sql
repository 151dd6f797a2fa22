-- Activity per product_id per known date (the day each event became knowable).
select
    product_id,
    known_date,
    {{ daily_activity_measures() }}
from {{ ref('int_events_known') }}
group by product_id, known_date
