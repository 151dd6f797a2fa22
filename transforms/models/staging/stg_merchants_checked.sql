-- Every raw merchants row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(merchant_id as {{ string_type() }}) as merchant_id,
        cast(country as {{ string_type() }}) as country,
        cast(tier as {{ string_type() }}) as tier,
        cast(main_category_l1 as {{ string_type() }}) as main_category_l1,
        cast(joined_ts as {{ instant_type() }}) as joined_ts,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'merchants') }}
),

row_checks as (
    select
        *,
        case
            when merchant_id is null then 'null_merchant_id'
            when _ingested_at is null then 'null_ingested_at'
            when tier is null or tier not in ({{ sql_list(var('merchant_tiers')) }}) then 'unknown_tier'
            when joined_ts is null then 'null_joined_ts'
        end as row_reject_reason
    from source_rows
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['merchant_id']) }}
)

select * from checked_rows
