{#- Time helpers. All dates and hours are UTC whatever the session time zone. -#}

{% macro utc_date(ts) -%}
    cast(timezone('UTC', {{ ts }}) as date)
{%- endmacro %}

{% macro utc_hour(ts) -%}
    cast(extract(hour from timezone('UTC', {{ ts }})) as bigint)
{%- endmacro %}

{#- The day an event became knowable: the later of when it happened and when it landed. -#}
{% macro known_date(event_ts, ingested_at='_ingested_at') -%}
    {{ utc_date('greatest(' ~ event_ts ~ ', ' ~ ingested_at ~ ')') }}
{%- endmacro %}

{#- A feature row for day D became true at D + 1 day 00:00 UTC. -#}
{% macro feature_event_timestamp(feature_date) -%}
    timezone('UTC', cast({{ feature_date }} as timestamp) + interval 1 day)
{%- endmacro %}

{#- One row per day from start_date to end_date inclusive (empty when start_date > end_date). -#}
{% macro days_between(start_date, end_date) -%}
    unnest(generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval 1 day))::date
{%- endmacro %}
