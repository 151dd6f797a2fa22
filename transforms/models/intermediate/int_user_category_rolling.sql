-- Rolling 30-day impressions, clicks and orders per user x category
-- per feature_date D over known dates D-N+1 .. D, on the dense spine (a quiet day is a zero).
{{ rolling_activity('int_user_category_days', 'int_user_category_activity_daily', ['user_id', 'category_l1'],
    windows={30: ['impressions', 'clicks', 'orders']}) }}
