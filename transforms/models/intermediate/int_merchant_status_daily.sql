-- Status of each merchant on each day of its spine: its rating (snapshot of that day, else the last
-- earlier one, among those landed by the end of that day), whether it live-streamed that day (no snapshot
-- landed that day: not live), and how many of its products had been created by the end of that day.
with merchant_days as (
    select merchant_id, feature_date
    from {{ ref('int_merchant_days') }}
),

-- A snapshot is usable from its known date, greatest(snapshot_date, landing date), like an event: one landing
-- late must not reach back into rows already published, nor replace a newer snapshot known before it.
snapshots as (
    select merchant_id, snapshot_date, rating, is_live, known_date
    from (
        select
            merchant_id, snapshot_date, rating, is_live,
            greatest(snapshot_date, {{ utc_date('_ingested_at') }}) as known_date
        from {{ ref('stg_merchant_daily') }}
    )
    qualify snapshot_date = max(snapshot_date) over (
            partition by merchant_id order by known_date range between unbounded preceding and current row
        )
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
    {{ asof_left_join('merchant_days', 'snapshots', ['merchant_id'], 'feature_date', 'known_date',
        {'rating': 'snapshots.rating'}) }}
),

product_counts_as_of_day as (
    {{ asof_left_join('merchant_days', 'cumulative_product_counts', ['merchant_id'], 'feature_date', 'created_date',
        {'product_count': 'coalesce(cumulative_product_counts.product_count, 0)'}) }}
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
    and same_day_snapshots.known_date = same_day_snapshots.snapshot_date
