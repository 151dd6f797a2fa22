{#- Dense day spine of an entity (int_user_days, int_product_days, int_merchant_days): one row per `key` per
    day from its start to the last day of the data. Its start is the UTC date of `start_ts` in
    `entity_model` (signup, creation, joining) or its first known activity in `activity_model`, whichever
    is first, but not before the data starts: a feature row exists from the first day anything about the
    entity could be known. -#}
{% macro entity_day_spine(key, entity_model, start_ts, activity_model) -%}
with entities as (
    select {{ key }}, {{ utc_date(start_ts) }} as entity_start_date
    from {{ ref(entity_model) }}
),

first_activity as (
    select {{ key }}, min(known_date) as first_activity_date
    from {{ ref(activity_model) }}
    group by {{ key }}
),

data_bounds as (
    select data_start_date, data_end_date from {{ ref('int_data_bounds') }}
),

entity_ranges as (
    select
        entities.{{ key }},
        greatest(data_bounds.data_start_date, least(entities.entity_start_date, first_activity.first_activity_date))
            as start_date,
        data_bounds.data_end_date as end_date
    from entities
    left join first_activity on entities.{{ key }} = first_activity.{{ key }}
    cross join data_bounds
)

select
    {{ key }},
    {{ days_between('start_date', 'end_date') }} as feature_date
from entity_ranges
{%- endmacro %}
