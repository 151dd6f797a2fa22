{#- Staging helpers shared by the *_checked models. -#}

{#- 'a', 'b', 'c' from a list of strings, for `in (...)` checks. -#}
{% macro sql_list(values) -%}
    {%- for value in values -%}'{{ value }}'{{ ', ' if not loop.last }}{%- endfor -%}
{%- endmacro %}

{#- Adds `reject_reason` to a relation that has a per-row `row_reject_reason` (null = passed):
    among the rows that passed, the same key landed more than once keeps its earliest `_ingested_at`
    copy and every later copy is rejected as 'duplicate'. A rejected row keeps its own reason. -#}
{% macro flag_duplicate_copies(relation, key_columns, order_by='_ingested_at, _landing_date') -%}
    select
        {{ star_except(["row_reject_reason", "_copy_rank"]) }},
        coalesce(row_reject_reason, case when _copy_rank > 1 then 'duplicate' end) as reject_reason
    from (
        select
            *,
            row_number() over (
                partition by {{ key_columns | join(', ') }}, row_reject_reason is null
                order by {{ order_by }}
            ) as _copy_rank
        from {{ relation }}
    )
{%- endmacro %}

{#- The rows of a *_checked model that passed every check, without the reason column. -#}
{% macro passed_rows(checked_model) -%}
    select {{ star_except(["reject_reason"]) }}
    from {{ ref(checked_model) }}
    where reject_reason is null
{%- endmacro %}
