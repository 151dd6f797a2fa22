-- Activity per user_id per known date (the day each event became knowable).
select
    user_id,
    known_date,
    {{ daily_activity_measures() }}
from {{ ref('int_events_known') }}
group by user_id, known_date
