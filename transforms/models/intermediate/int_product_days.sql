-- Dense product spine: one row per product per day from its creation or first known activity
-- (whichever is first, but not before the data starts) to the last day of the data.
{{ entity_day_spine('product_id', 'stg_products', 'created_ts', 'int_product_activity_daily') }}
