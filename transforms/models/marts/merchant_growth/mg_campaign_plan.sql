-- The campaign plan: one row per date from 28 days before the data starts to 14 days after it ends.
-- Inside the data the landed campaign_calendar is the truth; outside it (the days a forecast made on the
-- last day looks ahead to) the marketplace's public rule stands in for the published plan: a sale on
-- every double day M.M (mega for M = 9..12) and a payday sale on the 25th. No oracle is read.
{%- set mg_dir = env_var('SHOPRANK_HOME') ~ '/merchant_growth' %}
{{ config(
    materialized='external',
    location=mg_dir ~ '/mg_campaign_plan.parquet',
    pre_hook=ensure_dir(mg_dir)
) }}

with data_bounds as (
    select data_start_date, data_end_date from {{ ref('int_data_bounds') }}
),

plan_days as (
    select {{ days_between('data_start_date - 28', 'data_end_date + 14') }} as plan_date
    from data_bounds
),

landed as (
    select calendar_date, campaign_name, is_mega_sale
    from {{ ref('int_campaign_days') }}
),

ruled as (
    select
        plan_date,
        case
            when extract(month from plan_date) = extract(day from plan_date)
                then cast(extract(month from plan_date) as {{ string_type() }}) || '.'
                    || cast(extract(day from plan_date) as {{ string_type() }})
            when extract(day from plan_date) = 25 then 'payday'
        end as rule_campaign_name,
        extract(month from plan_date) = extract(day from plan_date)
        and extract(month from plan_date) between 9 and 12 as rule_is_mega
    from plan_days
)

select
    ruled.plan_date,
    cast(ruled.plan_date between data_bounds.data_start_date and data_bounds.data_end_date as bigint)
        as is_landed_calendar,
    case
        when ruled.plan_date between data_bounds.data_start_date and data_bounds.data_end_date
            then coalesce(landed.campaign_name, 'none')
        else coalesce(ruled.rule_campaign_name, 'none')
    end as campaign_name,
    cast(case
        when ruled.plan_date between data_bounds.data_start_date and data_bounds.data_end_date
            then landed.calendar_date is not null
        else ruled.rule_campaign_name is not null
    end as bigint) as is_campaign_day,
    cast(case
        when ruled.plan_date between data_bounds.data_start_date and data_bounds.data_end_date
            then coalesce(landed.is_mega_sale, false)
        else ruled.rule_is_mega
    end as bigint) as is_mega_sale
from ruled
cross join data_bounds
left join landed on ruled.plan_date = landed.calendar_date
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by ruled.plan_date
