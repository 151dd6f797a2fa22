{#- The marts are `external` models: dbt-duckdb writes each to its parquet file. dbt-spark has no such
    materialization: there a mart is a table of Spark's warehouse like any other, and
    platform_common/spark_marts.py exports it afterwards to the same file (its `location`, or
    $SHOPRANK_HOME/marts/<name>.parquet), so every reader finds the marts where it always did. -#}
{% materialization external, adapter='spark' %}
    {{ return(materialization_table_spark()) }}
{% endmaterialization %}
