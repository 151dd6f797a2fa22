-- Every raw orders row, typed, with the reason it is rejected (null when it passes).
-- An order must point at a landed (orphan_impression) and valid (rejected_impression) impression, and at
-- a landed (orphan_click) and valid (rejected_click) click on that same impression (click_mismatch),
-- for the impression's user and product (impression_mismatch); gmv must equal quantity x unit_price.
with source_rows as (
    select
        cast(order_id as {{ string_type() }}) as order_id,
        cast(impression_id as {{ string_type() }}) as impression_id,
        cast(click_id as {{ string_type() }}) as click_id,
        cast(event_ts as {{ instant_type() }}) as event_ts,
        cast(user_id as {{ string_type() }}) as user_id,
        cast(product_id as {{ string_type() }}) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as double) as unit_price,
        cast(gmv as double) as gmv,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'orders') }}
),

landed_impressions as (
    select distinct impression_id
    from {{ ref('stg_impressions_checked') }}
    where impression_id is not null
),

valid_impressions as (
    select impression_id, user_id, product_id from {{ ref('stg_impressions') }}
),

landed_clicks as (
    select distinct click_id
    from {{ ref('stg_clicks_checked') }}
    where click_id is not null
),

valid_clicks as (
    select click_id, impression_id from {{ ref('stg_clicks') }}
),

row_checks as (
    select
        source_rows.*,
        case
            when source_rows.order_id is null then 'null_order_id'
            when source_rows._ingested_at is null then 'null_ingested_at'
            when source_rows.event_ts is null then 'null_event_ts'
            when source_rows.impression_id is null then 'null_impression_id'
            when source_rows.click_id is null then 'null_click_id'
            when source_rows.user_id is null then 'null_user_id'
            when source_rows.product_id is null then 'null_product_id'
            when source_rows.quantity is null or source_rows.quantity <= 0 then 'bad_quantity'
            when source_rows.unit_price is null or source_rows.unit_price < 0 then 'invalid_unit_price'
            when source_rows.gmv < 0 then 'negative_gmv'
            when source_rows.gmv is null
                or abs(source_rows.gmv - source_rows.quantity * source_rows.unit_price) > {{ var('gmv_tolerance') }}
                then 'gmv_mismatch'
            when source_rows.event_ts > source_rows._ingested_at then 'future_event_ts'
            when landed_impressions.impression_id is null then 'orphan_impression'
            when valid_impressions.impression_id is null then 'rejected_impression'
            when landed_clicks.click_id is null then 'orphan_click'
            when valid_clicks.click_id is null then 'rejected_click'
            when valid_clicks.impression_id != source_rows.impression_id then 'click_mismatch'
            when source_rows.user_id != valid_impressions.user_id
                or source_rows.product_id != valid_impressions.product_id then 'impression_mismatch'
        end as row_reject_reason
    from source_rows
    left join landed_impressions on source_rows.impression_id = landed_impressions.impression_id
    left join valid_impressions on source_rows.impression_id = valid_impressions.impression_id
    left join landed_clicks on source_rows.click_id = landed_clicks.click_id
    left join valid_clicks on source_rows.click_id = valid_clicks.click_id
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['order_id']) }}
)

select * from checked_rows
