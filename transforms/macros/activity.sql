{#- Daily activity measures of a group of int_events_known rows. -#}
{% macro daily_activity_measures() -%}
    count(*) filter (where event_type = 'impression') as impressions,
    count(*) filter (where event_type = 'click') as clicks,
    count(*) filter (where event_type = 'order') as orders,
    coalesce({{ exact_sum('gmv', filter="event_type = 'order'") }}, 0.0) as gmv
{%- endmacro %}

{#- Rolling activity of an entity: its dense day spine (`days_model`: keys + feature_date) left-joined to
    its daily activity by known date (`activity_model`: keys + known_date + daily measures), so a quiet
    day is a zero, then summed over range windows ending on each feature_date.
    `windows` maps a window length in days to the measures summed over it (counts: bigint; gmv and *_sum:
    double), giving <measure>_<N>d. Only the windows asked for are computed: each one is a
    pass over the dense rows. -#}
{% macro rolling_activity(days_model, activity_model, keys, windows) -%}
    {%- set partition_by = keys | join(', ') -%}
    {%- set measures = [] -%}
    {%- for days, window_measures in windows.items() -%}
        {%- for measure in window_measures if measure not in measures -%}
            {%- do measures.append(measure) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set double_measures = [] -%}
    {%- for measure in measures if measure == 'gmv' or measure.endswith('_sum') -%}
        {%- do double_measures.append(measure) -%}
    {%- endfor -%}
with entity_days as (
    select {{ partition_by }}, feature_date
    from {{ ref(days_model) }}
),

daily_activity as (
    select {{ partition_by }}, known_date, {{ measures | join(', ') }}
    from {{ ref(activity_model) }}
),

dense_daily_activity as (
    select
        {%- for key in keys %}
            entity_days.{{ key }},
        {%- endfor %}
        entity_days.feature_date,
        {%- for measure in measures %}
            coalesce(daily_activity.{{ measure }}, {{ '0.0' if measure in double_measures else '0' }}) as {{ measure }}
            {{- ',' if not loop.last }}
        {%- endfor %}
    from entity_days
    left join daily_activity
        on
        {%- for key in keys %}
            entity_days.{{ key }} = daily_activity.{{ key }} and
        {%- endfor %}
        entity_days.feature_date = daily_activity.known_date
)

select
    {{ partition_by }},
    feature_date,
    {%- for days, window_measures in windows.items() %}
        {%- set outer_loop = loop %}
        {%- for measure in window_measures %}
            {{ rolling_sum(measure, days, partition_by, cast_as='double' if measure in double_measures else 'bigint') }}
                as {{ measure }}_{{ days }}d
            {{- ',' if not (loop.last and outer_loop.last) }}
        {%- endfor %}
    {%- endfor %}
from dense_daily_activity
{%- endmacro %}
