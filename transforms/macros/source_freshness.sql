{#- `dbt source freshness` as of a given time (issue 19, `make monitor`). dbt compares the newest
    loaded_at_field with the database's current time; the monitor judges a window that closed at a given
    instant (the day it monitors, or a past day it re-judges), so with var('freshness_as_of') set (an ISO UTC
    time) a row counts only if it had landed by then and its age is taken at that instant. Without the var
    it is dbt's own query: the newest row and now. -#}
{% macro duckdb__collect_freshness(source, loaded_at_field, filter) %}
    {%- set as_of = var('freshness_as_of', none) -%}
    {% call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
        select
            max({{ loaded_at_field }}) as max_loaded_at,
            {% if as_of -%}
                '{{ as_of }}'::timestamptz
            {%- else -%}
                {{ current_timestamp() }}
            {%- endif %} as snapshotted_at
        from {{ source }}
        where true
            {% if as_of -%}and {{ loaded_at_field }} < '{{ as_of }}'::timestamptz{%- endif %}
            {% if filter -%}and ({{ filter }}){%- endif %}
    {%- endcall %}
    {{ return(load_result('collect_freshness')) }}
{% endmacro %}
