-- Dense user x category spine: one row per pair per day from the pair's first known activity
-- to the last day of the data.
with first_activity as (
    select user_id, category_l1, min(known_date) as first_activity_date
    from {{ ref('int_user_category_activity_daily') }}
    group by user_id, category_l1
),

data_bounds as (
    select data_end_date from {{ ref('int_data_bounds') }}
)

select
    first_activity.user_id,
    first_activity.category_l1,
    {{ days_between('first_activity.first_activity_date', 'data_bounds.data_end_date') }} as feature_date
from first_activity
cross join data_bounds
