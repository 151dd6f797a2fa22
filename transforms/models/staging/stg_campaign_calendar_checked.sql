-- Every raw campaign_calendar row, typed, with the reason it is rejected (null when it passes).
with source_rows as (
    select
        cast(calendar_date as date) as calendar_date,
        cast(campaign_name as {{ string_type() }}) as campaign_name,
        cast(is_mega_sale as boolean) as is_mega_sale,
        cast(_ingested_at as {{ instant_type() }}) as _ingested_at,
        cast(dt as date) as _landing_date
    from {{ source('raw', 'campaign_calendar') }}
),

row_checks as (
    select
        *,
        case
            when calendar_date is null then 'null_calendar_date'
            when campaign_name is null then 'null_campaign_name'
            when _ingested_at is null then 'null_ingested_at'
            when is_mega_sale is null then 'null_is_mega_sale'
        end as row_reject_reason
    from source_rows
),

checked_rows as (
    {{ flag_duplicate_copies('row_checks', ['calendar_date', 'campaign_name']) }}
)

select * from checked_rows
