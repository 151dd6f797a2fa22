-- Every raw product_prices row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(product_id as {{ string_type() }}) as product_id,
        cast(price_date as date) as price_date,
        cast(price as double) as price,
        cast(discount_pct as double) as discount_pct,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'product_prices') }}
),

products as (
    select product_id from {{ ref('stg_products') }}
),

row_checks as (
    select
        source_rows.*,
        case
            when source_rows.product_id is null then 'null_product_id'
            when source_rows.price_date is null then 'null_price_date'
            when source_rows._ingested_at is null then 'null_ingested_at'
            when source_rows.price is null or source_rows.price <= 0 then 'invalid_price'
            when source_rows.discount_pct is null
                or source_rows.discount_pct < 0
                or source_rows.discount_pct > 0.9 then 'invalid_discount'
            when products.product_id is null then 'unknown_product'
        end as row_reject_reason
    from source_rows
    left join products on source_rows.product_id = products.product_id
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['product_id', 'price_date']) }}
)

select * from checked_rows
