-- Dense merchant spine: one row per merchant per day from joining or first known activity
-- (whichever is first, but not before the data starts) to the last day of the data.
{{ entity_day_spine('merchant_id', 'stg_merchants', 'joined_ts', 'int_merchant_activity_daily') }}
