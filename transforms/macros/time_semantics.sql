{#- Time helpers. All dates and hours are UTC whatever the session time zone. -#}

{% macro utc_date(ts) -%}{{ return(adapter.dispatch('utc_date')(ts)) }}{%- endmacro %}
{% macro default__utc_date(ts) -%}
    cast(timezone('UTC', {{ ts }}) as date)
{%- endmacro %}
{#- Spark's timestamps are instants shown in the session time zone, which the spark target sets to UTC. -#}
{% macro spark__utc_date(ts) -%}
    to_date({{ ts }})
{%- endmacro %}

{% macro utc_hour(ts) -%}{{ return(adapter.dispatch('utc_hour')(ts)) }}{%- endmacro %}
{% macro default__utc_hour(ts) -%}
    cast(extract(hour from timezone('UTC', {{ ts }})) as bigint)
{%- endmacro %}
{% macro spark__utc_hour(ts) -%}
    cast(hour({{ ts }}) as bigint)
{%- endmacro %}

{#- The day an event became knowable: the later of when it happened and when it landed. -#}
{% macro known_date(event_ts, ingested_at='_ingested_at') -%}
    {{ utc_date('greatest(' ~ event_ts ~ ', ' ~ ingested_at ~ ')') }}
{%- endmacro %}

{#- A feature row for day D became true at D + 1 day 00:00 UTC. -#}
{% macro feature_event_timestamp(feature_date) -%}
    {{ return(adapter.dispatch('feature_event_timestamp')(feature_date)) }}
{%- endmacro %}
{% macro spark__feature_event_timestamp(feature_date) -%}
    cast({{ feature_date }} as timestamp) + interval 1 day
{%- endmacro %}
{% macro default__feature_event_timestamp(feature_date) -%}
    timezone('UTC', cast({{ feature_date }} as timestamp) + interval 1 day)
{%- endmacro %}

{#- One row per day from start_date to end_date inclusive (empty when start_date > end_date). -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between')(start_date, end_date)) }}
{%- endmacro %}
{% macro spark__days_between(start_date, end_date) -%}
    {#- sequence() raises on an empty range where generate_series gives no row: an empty array instead. -#}
    explode(case
        when cast({{ start_date }} as date) <= cast({{ end_date }} as date)
            then sequence(cast({{ start_date }} as date), cast({{ end_date }} as date), interval 1 day)
        else cast(array() as array<date>)
    end)
{%- endmacro %}
{% macro default__days_between(start_date, end_date) -%}
    unnest(generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval 1 day))::date
{%- endmacro %}

{#- The instant a UTC date begins (D 00:00 UTC). -#}
{% macro day_start_timestamp(day) -%}
    {{ return(adapter.dispatch('day_start_timestamp')(day)) }}
{%- endmacro %}
{% macro spark__day_start_timestamp(day) -%}
    cast({{ day }} as timestamp)
{%- endmacro %}
{% macro default__day_start_timestamp(day) -%}
    timezone('UTC', cast({{ day }} as timestamp))
{%- endmacro %}
