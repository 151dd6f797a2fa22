-- Every raw clicks row, typed, with the reason it is rejected (null when it passes).
-- A click must point at an impression that landed (else orphan_impression) and passed staging
-- (else rejected_impression), for the same user and product (else impression_mismatch).
with source_rows as (
    select
        cast(click_id as {{ string_type() }}) as click_id,
        cast(impression_id as {{ string_type() }}) as impression_id,
        cast(event_ts as {{ instant_type() }}) as event_ts,
        cast(user_id as {{ string_type() }}) as user_id,
        cast(product_id as {{ string_type() }}) as product_id,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'clicks') }}
),

landed_impressions as (
    select distinct impression_id
    from {{ ref('stg_impressions_checked') }}
    where impression_id is not null
),

valid_impressions as (
    select impression_id, user_id, product_id from {{ ref('stg_impressions') }}
),

row_checks as (
    select
        source_rows.*,
        case
            when source_rows.click_id is null then 'null_click_id'
            when source_rows._ingested_at is null then 'null_ingested_at'
            when source_rows.event_ts is null then 'null_event_ts'
            when source_rows.impression_id is null then 'null_impression_id'
            when source_rows.user_id is null then 'null_user_id'
            when source_rows.product_id is null then 'null_product_id'
            when source_rows.event_ts > source_rows._ingested_at then 'future_event_ts'
            when landed_impressions.impression_id is null then 'orphan_impression'
            when valid_impressions.impression_id is null then 'rejected_impression'
            when source_rows.user_id != valid_impressions.user_id
                or source_rows.product_id != valid_impressions.product_id then 'impression_mismatch'
        end as row_reject_reason
    from source_rows
    left join landed_impressions on source_rows.impression_id = landed_impressions.impression_id
    left join valid_impressions on source_rows.impression_id = valid_impressions.impression_id
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['click_id']) }}
)

select * from checked_rows
