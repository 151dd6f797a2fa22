-- Dense user spine: one row per user per day from signup or first known activity (whichever is first,
-- but not before the data starts) to the last day of the data.
{{ entity_day_spine('user_id', 'stg_users', 'signup_ts', 'int_user_activity_daily') }}
