{#- Where DuckDB's and Spark SQL's dialects differ (SHOPRANK_OFFLINE_ENGINE=duckdb|spark, dbt targets `local`
    and `spark`). Each macro goes through adapter.dispatch: `default__` is the DuckDB text the project always
    had, so the DuckDB build is unchanged byte for byte; `spark__` is the Spark SQL equivalent. The models
    call these and stay one copy for both engines. -#}

{#- The string type of a cast: DuckDB's varchar; Spark's varchar needs a length, its string does not. -#}
{% macro string_type() -%}{{ return(adapter.dispatch('string_type')()) }}{%- endmacro %}
{% macro default__string_type() -%}varchar{%- endmacro %}
{% macro spark__string_type() -%}string{%- endmacro %}

{#- An instant in time: DuckDB's timestamptz; Spark's timestamp is one already (shown in the session's UTC). -#}
{% macro instant_type() -%}{{ return(adapter.dispatch('instant_type')()) }}{%- endmacro %}
{% macro default__instant_type() -%}timestamptz{%- endmacro %}
{% macro spark__instant_type() -%}timestamp{%- endmacro %}

{#- Every column but `columns`: DuckDB's `* exclude (...)`, Spark's `* except (...)`. -#}
{% macro star_except(columns) -%}{{ return(adapter.dispatch('star_except')(columns)) }}{%- endmacro %}
{% macro default__star_except(columns) -%}* exclude ({{ columns | join(', ') }}){%- endmacro %}
{% macro spark__star_except(columns) -%}* except ({{ columns | join(', ') }}){%- endmacro %}

{#- The values of `expression` in a group, joined by `separator` in the order of `order_by`. -#}
{% macro ordered_string_agg(expression, separator, order_by) -%}
    {{ return(adapter.dispatch('ordered_string_agg')(expression, separator, order_by)) }}
{%- endmacro %}
{% macro default__ordered_string_agg(expression, separator, order_by) -%}
    string_agg({{ expression }}, {{ separator }} order by {{ order_by }})
{%- endmacro %}
{% macro spark__ordered_string_agg(expression, separator, order_by) -%}
    listagg({{ expression }}, {{ separator }}) within group (order by {{ order_by }})
{%- endmacro %}

{#- One row per element of a literal list of strings (`values`), as a column. -#}
{% macro unnest_strings(values) -%}{{ return(adapter.dispatch('unnest_strings')(values)) }}{%- endmacro %}
{% macro default__unnest_strings(values) -%}unnest([{{ sql_list(values) }}]){%- endmacro %}
{% macro spark__unnest_strings(values) -%}explode(array({{ sql_list(values) }})){%- endmacro %}

{#- Whole days from `start_date` to `end_date` (both dates): DuckDB subtracts dates to an integer, Spark to an
    interval. -#}
{% macro days_diff(end_date, start_date) -%}
    {{ return(adapter.dispatch('days_diff')(end_date, start_date)) }}
{%- endmacro %}
{% macro default__days_diff(end_date, start_date) -%}{{ end_date }} - {{ start_date }}{%- endmacro %}
{% macro spark__days_diff(end_date, start_date) -%}datediff({{ end_date }}, {{ start_date }}){%- endmacro %}

{#- The exact integer type of the fixed-point sums (macros/exact_sums.sql): DuckDB's 128-bit hugeint, Spark's
    decimal(38, 0) (the same range to within 2^1: totals up to 1e38 / 2^60, about 8.7e19). -#}
{% macro fixed_point_type() -%}{{ return(adapter.dispatch('fixed_point_type')()) }}{%- endmacro %}
{% macro default__fixed_point_type() -%}hugeint{%- endmacro %}
{% macro spark__fixed_point_type() -%}decimal(38, 0){%- endmacro %}

{#- `select <left>.*, <right>.<columns> from <left> asof left join <right>`: for each left row, the right row of
    the same `keys` with the latest `right_time` at or before `left_time` (nulls when there is none). DuckDB
    has the ASOF join; Spark SQL has none, so there it is a range join ranked by the right row's time. The
    left relation must be unique by keys + left_time (a day spine is). -#}
{% macro asof_left_join(left, right, keys, left_time, right_time, columns) -%}
    {{ return(adapter.dispatch('asof_left_join')(left, right, keys, left_time, right_time, columns)) }}
{%- endmacro %}
{% macro default__asof_left_join(left, right, keys, left_time, right_time, columns) -%}
    select
        {%- for key in keys %}
        {{ left }}.{{ key }},
        {%- endfor %}
        {{ left }}.{{ left_time }},
        {%- for column, expression in columns.items() %}
        {{ expression }} as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ left }}
    asof left join {{ right }}
        on
        {%- for key in keys %}
        {{ left }}.{{ key }} = {{ right }}.{{ key }} and
        {%- endfor %}
        {{ left }}.{{ left_time }} >= {{ right }}.{{ right_time }}
{%- endmacro %}
{% macro spark__asof_left_join(left, right, keys, left_time, right_time, columns) -%}
    select {{ keys | join(', ') }}, {{ left_time }}, {{ columns.keys() | join(', ') }}
    from (
        select
            {%- for key in keys %}
            {{ left }}.{{ key }},
            {%- endfor %}
            {{ left }}.{{ left_time }},
            {%- for column, expression in columns.items() %}
            {{ expression }} as {{ column }},
            {%- endfor %}
            row_number() over (
                partition by
                {%- for key in keys %} {{ left }}.{{ key }},{% endfor %} {{ left }}.{{ left_time }}
                order by {{ right }}.{{ right_time }} desc nulls last
            ) as _asof_rank
        from {{ left }}
        left join {{ right }}
            on
            {%- for key in keys %}
            {{ left }}.{{ key }} = {{ right }}.{{ key }} and
            {%- endfor %}
            {{ left }}.{{ left_time }} >= {{ right }}.{{ right_time }}
    )
    where _asof_rank = 1
{%- endmacro %}

{#- Creates the folder a DuckDB COPY writes into (see ensure_marts_dir). Spark tables live in its warehouse
    and the export (platform_common/spark_marts.py) creates the folders: nothing to do there. -#}
{% macro ensure_dir(path) -%}{{ return(adapter.dispatch('ensure_dir')(path)) }}{%- endmacro %}
{% macro default__ensure_dir(path) -%}
    copy (select 1 as _partition, 1 as _unused where false) to '{{ path }}'
    (format parquet, partition_by (_partition), overwrite_or_ignore true)
{%- endmacro %}
{% macro spark__ensure_dir(path) -%}{%- endmacro %}
