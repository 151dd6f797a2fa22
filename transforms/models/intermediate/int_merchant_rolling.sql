-- Rolling 7-day (gmv) and 30-day (impressions, clicks, orders, gmv) activity per merchant
-- per feature_date D over known dates D-N+1 .. D, on the dense spine (a quiet day is a zero).
{{ rolling_activity('int_merchant_days', 'int_merchant_activity_daily', ['merchant_id'],
    windows={7: ['gmv'], 30: ['impressions', 'clicks', 'orders', 'gmv']}) }}
