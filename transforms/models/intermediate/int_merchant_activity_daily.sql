-- Activity per merchant_id per known date (the day each event became knowable).
select
    merchant_id,
    known_date,
    {{ daily_activity_measures() }}
from {{ ref('int_events_known') }}
group by merchant_id, known_date
