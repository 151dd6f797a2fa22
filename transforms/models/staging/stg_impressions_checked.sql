-- Every raw impressions row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(impression_id as {{ string_type() }}) as impression_id,
        cast(request_id as {{ string_type() }}) as request_id,
        cast(event_ts as {{ instant_type() }}) as event_ts,
        cast(user_id as {{ string_type() }}) as user_id,
        cast(product_id as {{ string_type() }}) as product_id,
        cast(surface as {{ string_type() }}) as surface,
        cast(position as integer) as position,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'impressions') }}
),

users as (
    select user_id from {{ ref('stg_users') }}
),

products as (
    select product_id from {{ ref('stg_products') }}
),

row_checks as (
    select
        source_rows.*,
        case
            when source_rows.impression_id is null then 'null_impression_id'
            when source_rows._ingested_at is null then 'null_ingested_at'
            when source_rows.event_ts is null then 'null_event_ts'
            when source_rows.user_id is null then 'null_user_id'
            when source_rows.product_id is null then 'null_product_id'
            when source_rows.surface is null then 'null_surface'
            when source_rows.surface not in ({{ sql_list(var('surfaces')) }}) then 'unknown_surface'
            when source_rows.position is null or source_rows.position <= 0 then 'bad_position'
            when source_rows.event_ts > source_rows._ingested_at then 'future_event_ts'
            when users.user_id is null then 'unknown_user'
            when products.product_id is null then 'unknown_product'
        end as row_reject_reason
    from source_rows
    left join users on source_rows.user_id = users.user_id
    left join products on source_rows.product_id = products.product_id
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['impression_id']) }}
)

select * from checked_rows
