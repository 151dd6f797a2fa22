-- Every raw users row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(user_id as {{ string_type() }}) as user_id,
        cast(country as {{ string_type() }}) as country,
        cast(device as {{ string_type() }}) as device,
        cast(signup_ts as {{ instant_type() }}) as signup_ts,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'users') }}
),

row_checks as (
    select
        *,
        case
            when user_id is null then 'null_user_id'
            when _ingested_at is null then 'null_ingested_at'
            when country is null or country not in ({{ sql_list(var('countries')) }}) then 'unknown_country'
            when device is null or device not in ({{ sql_list(var('devices')) }}) then 'unknown_device'
            when signup_ts is null then 'null_signup_ts'
        end as row_reject_reason
    from source_rows
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['user_id']) }}
)

select * from checked_rows
