-- Activity per user_id x category_l1 per known date (the day each event became knowable).
select
    user_id, category_l1,
    known_date,
    {{ daily_activity_measures() }}
from {{ ref('int_events_known') }}
group by user_id, category_l1, known_date
