-- Dense merchant spine: one row per merchant per day from joining or first known activity
-- (whichever is first, but not before the data starts) to the last day of the data.
with merchants as (
    select merchant_id, {{ utc_date('joined_ts') }} as joined_date
    from {{ ref('stg_merchants') }}
),

first_activity as (
    select merchant_id, min(known_date) as first_activity_date
    from {{ ref('int_merchant_activity_daily') }}
    group by merchant_id
),

data_bounds as (
    select data_start_date, data_end_date from {{ ref('int_data_bounds') }}
),

merchant_ranges as (
    select
        merchants.merchant_id,
        greatest(data_bounds.data_start_date, least(merchants.joined_date, first_activity.first_activity_date))
            as start_date,
        data_bounds.data_end_date as end_date
    from merchants
    left join first_activity on merchants.merchant_id = first_activity.merchant_id
    cross join data_bounds
)

select
    merchant_id,
    {{ days_between('start_date', 'end_date') }} as feature_date
from merchant_ranges
