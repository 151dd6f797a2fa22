-- Dense user spine: one row per user per day from signup or first known activity (whichever is first,
-- but not before the data starts) to the last day of the data.
with users as (
    select user_id, {{ utc_date('signup_ts') }} as signup_date
    from {{ ref('stg_users') }}
),

first_activity as (
    select user_id, min(known_date) as first_activity_date
    from {{ ref('int_user_activity_daily') }}
    group by user_id
),

data_bounds as (
    select data_start_date, data_end_date from {{ ref('int_data_bounds') }}
),

user_ranges as (
    select
        users.user_id,
        greatest(data_bounds.data_start_date, least(users.signup_date, first_activity.first_activity_date))
            as start_date,
        data_bounds.data_end_date as end_date
    from users
    left join first_activity on users.user_id = first_activity.user_id
    cross join data_bounds
)

select
    user_id,
    {{ days_between('start_date', 'end_date') }} as feature_date
from user_ranges
