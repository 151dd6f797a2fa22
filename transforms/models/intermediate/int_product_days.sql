-- Dense product spine: one row per product per day from its creation or first known activity
-- (whichever is first, but not before the data starts) to the last day of the data.
with products as (
    select product_id, {{ utc_date('created_ts') }} as created_date
    from {{ ref('stg_products') }}
),

first_activity as (
    select product_id, min(known_date) as first_activity_date
    from {{ ref('int_product_activity_daily') }}
    group by product_id
),

data_bounds as (
    select data_start_date, data_end_date from {{ ref('int_data_bounds') }}
),

product_ranges as (
    select
        products.product_id,
        greatest(data_bounds.data_start_date, least(products.created_date, first_activity.first_activity_date))
            as start_date,
        data_bounds.data_end_date as end_date
    from products
    left join first_activity on products.product_id = first_activity.product_id
    cross join data_bounds
)

select
    product_id,
    {{ days_between('start_date', 'end_date') }} as feature_date
from product_ranges
