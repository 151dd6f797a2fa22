-- Rolling 7-day (impressions, clicks) and 30-day (impressions, clicks, orders, gmv, and the priced impression
-- and click counts and log relative price sums) activity per user per feature_date D over known dates
-- D-N+1 .. D, on the dense spine (a quiet day is a zero).
{{ rolling_activity('int_user_days', 'int_user_activity_daily', ['user_id'],
    windows={7: ['impressions', 'clicks'],
             30: ['impressions', 'clicks', 'orders', 'gmv', 'priced_impressions', 'priced_clicks',
                  'impressed_log_price_rel_sum', 'clicked_log_price_rel_sum']}) }}
