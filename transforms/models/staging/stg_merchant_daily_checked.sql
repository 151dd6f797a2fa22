-- Every raw merchant_daily row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(merchant_id as {{ string_type() }}) as merchant_id,
        cast(snapshot_date as date) as snapshot_date,
        cast(rating as double) as rating,
        cast(is_live as boolean) as is_live,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'merchant_daily') }}
),

merchants as (
    select merchant_id from {{ ref('stg_merchants') }}
),

row_checks as (
    select
        source_rows.*,
        case
            when source_rows.merchant_id is null then 'null_merchant_id'
            when source_rows.snapshot_date is null then 'null_snapshot_date'
            when source_rows._ingested_at is null then 'null_ingested_at'
            when source_rows.rating is null
                or source_rows.rating < 1
                or source_rows.rating > 5 then 'invalid_rating'
            when source_rows.is_live is null then 'null_is_live'
            when merchants.merchant_id is null then 'unknown_merchant'
        end as row_reject_reason
    from source_rows
    left join merchants on source_rows.merchant_id = merchants.merchant_id
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['merchant_id', 'snapshot_date']) }}
)

select * from checked_rows
