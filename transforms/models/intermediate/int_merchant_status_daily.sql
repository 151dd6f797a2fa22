-- Status of each merchant on each day of its spine: its rating (snapshot of that day, else the last
-- earlier one), whether it live-streamed that day (no snapshot: not live), and how many of its products
-- had been created by the end of that day.
with merchant_days as (
    select merchant_id, feature_date
    from {{ ref('int_merchant_days') }}
),

snapshots as (
    select merchant_id, snapshot_date, rating, is_live
    from {{ ref('stg_merchant_daily') }}
),

product_creations as (
    select merchant_id, {{ utc_date('created_ts') }} as created_date, count(*) as products_created
    from {{ ref('stg_products') }}
    group by merchant_id, created_date
),

cumulative_product_counts as (
    select
        merchant_id,
        created_date,
        cast(sum(products_created) over (
            partition by merchant_id
            order by created_date
            rows between unbounded preceding and current row
        ) as bigint) as product_count
    from product_creations
),

ratings_as_of_day as (
    select
        merchant_days.merchant_id,
        merchant_days.feature_date,
        snapshots.rating
    from merchant_days
    asof left join snapshots
        on merchant_days.merchant_id = snapshots.merchant_id
        and merchant_days.feature_date >= snapshots.snapshot_date
),

product_counts_as_of_day as (
    select
        merchant_days.merchant_id,
        merchant_days.feature_date,
        coalesce(cumulative_product_counts.product_count, 0) as product_count
    from merchant_days
    asof left join cumulative_product_counts
        on merchant_days.merchant_id = cumulative_product_counts.merchant_id
        and merchant_days.feature_date >= cumulative_product_counts.created_date
)

select
    ratings_as_of_day.merchant_id,
    ratings_as_of_day.feature_date,
    ratings_as_of_day.rating,
    cast(coalesce(same_day_snapshots.is_live, false) as bigint) as is_live,
    product_counts_as_of_day.product_count
from ratings_as_of_day
inner join product_counts_as_of_day
    on ratings_as_of_day.merchant_id = product_counts_as_of_day.merchant_id
    and ratings_as_of_day.feature_date = product_counts_as_of_day.feature_date
left join snapshots as same_day_snapshots
    on ratings_as_of_day.merchant_id = same_day_snapshots.merchant_id
    and ratings_as_of_day.feature_date = same_day_snapshots.snapshot_date
