{#- DuckDB's COPY does not create the parent folder of a file, and the external marts are written to
    $SHOPRANK_HOME/marts/<name>.parquet. A partitioned COPY of zero rows creates the folder (one level,
    $SHOPRANK_HOME itself exists since it holds the warehouse) and writes no file; existing files are
    left alone. -#}
{% macro ensure_marts_dir() -%}{{ return(adapter.dispatch('ensure_marts_dir')()) }}{%- endmacro %}
{% macro default__ensure_marts_dir() -%}
    copy (select 1 as _partition, 1 as _unused where false)
    to '{{ env_var("SHOPRANK_HOME") }}/marts'
    (format parquet, partition_by (_partition), overwrite_or_ignore true)
{%- endmacro %}


{#- On Spark the marts are tables of its warehouse, exported to the same parquet files afterwards
    (platform_common/spark_marts.py). What this hook does there instead: the raw landing zone as views
    `raw.<table>` (source('raw', ...) renders as such), partition column dt discovered from the folders and
    the files' columns merged by name, as DuckDB's read_parquet(..., hive_partitioning, union_by_name) does. -#}
{% macro spark__ensure_marts_dir() -%}
    {%- if not execute %}{{ return('') }}{% endif -%}
    {%- do run_query("create schema if not exists raw") -%}
    {%- for source in graph.sources.values() if source.source_name == 'raw' -%}
        {%- do run_query(
            "create or replace view raw." ~ source.name ~ " as select * from parquet.`"
            ~ env_var('SHOPRANK_HOME') ~ "/raw/" ~ source.name ~ "`"
        ) -%}
    {%- endfor -%}
{%- endmacro %}