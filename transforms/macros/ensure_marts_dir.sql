{#- DuckDB's COPY does not create the parent folder of a file, and the external marts are written to
    $SHOPRANK_HOME/marts/<name>.parquet. A partitioned COPY of zero rows creates the folder (one level,
    $SHOPRANK_HOME itself exists since it holds the warehouse) and writes no file; existing files are
    left alone. -#}
{% macro ensure_marts_dir() -%}
    copy (select 1 as _partition, 1 as _unused where false)
    to '{{ env_var("SHOPRANK_HOME") }}/marts'
    (format parquet, partition_by (_partition), overwrite_or_ignore true)
{%- endmacro %}
