-- Every raw products row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(product_id as {{ string_type() }}) as product_id,
        cast(merchant_id as {{ string_type() }}) as merchant_id,
        cast(category_l1 as {{ string_type() }}) as category_l1,
        cast(category_l2 as {{ string_type() }}) as category_l2,
        cast(base_price as double) as base_price,
        cast(created_ts as {{ instant_type() }}) as created_ts,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'products') }}
),

merchants as (
    select merchant_id from {{ ref('stg_merchants') }}
),

row_checks as (
    select
        source_rows.*,
        case
            when source_rows.product_id is null then 'null_product_id'
            when source_rows._ingested_at is null then 'null_ingested_at'
            when source_rows.merchant_id is null then 'null_merchant_id'
            when source_rows.category_l1 is null then 'null_category_l1'
            when source_rows.base_price is null or source_rows.base_price <= 0 then 'invalid_base_price'
            when source_rows.created_ts is null then 'null_created_ts'
            when merchants.merchant_id is null then 'unknown_merchant'
        end as row_reject_reason
    from source_rows
    left join merchants on source_rows.merchant_id = merchants.merchant_id
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['product_id']) }}
)

select * from checked_rows
