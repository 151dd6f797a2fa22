-- Rolling 7-day (impressions, clicks) and 30-day (impressions, clicks, orders, gmv) activity per product
-- per feature_date D over known dates D-N+1 .. D, on the dense spine (a quiet day is a zero).
{{ rolling_activity('int_product_days', 'int_product_activity_daily', ['product_id'],
    windows={7: ['impressions', 'clicks'], 30: ['impressions', 'clicks', 'orders', 'gmv']}) }}
