{#- Prints the quality report (quarantine counts by source table and reason) after a build:
      dbt run-operation quarantine_report --profiles-dir . -#}
{% macro quarantine_report() %}
    {%- set report = run_query(
        "select source_table, reason, quarantined_rows, landed_rows, round(100 * quarantined_share, 3) as pct"
        ~ " from " ~ ref('quarantine_summary') ~ " order by source_table, quarantined_rows desc, reason"
    ) -%}
    {%- do log("quarantine report (source_table, reason, rows, landed rows, % of landed):", info=true) -%}
    {%- for row in report.rows -%}
        {%- set line = "  " ~ row[0] ~ "  " ~ row[1] ~ "  " ~ row[2] ~ "  / " ~ row[3] ~ "  (" ~ row[4] ~ "%)" -%}
        {%- do log(line, info=true) -%}
    {%- endfor -%}
    {%- if report.rows | length == 0 -%}
        {%- do log("  nothing quarantined", info=true) -%}
    {%- endif -%}
{% endmacro %}
