{#- Sum of `column` over the `days`-day window ending on the row's date: dates D-days+1 .. D.
    A range frame on the date, so it stays correct even if a day were missing from the spine.
    A double sum is taken in fixed point (macros/exact_sums.sql), so it does not depend on the summing order. -#}
{% macro rolling_sum(column, days, partition_by, order_by='feature_date', cast_as='bigint') -%}
    {%- set frame -%}
    (
        partition by {{ partition_by }}
        order by {{ order_by }}
        range between interval {{ days - 1 }} days preceding and current row
    )
    {%- endset -%}
    {%- if cast_as == 'double' -%}
    {{ exact_sum(column, over=frame) }}
    {%- else -%}
    cast(sum({{ column }}) over {{ frame }} as {{ cast_as }})
    {%- endif -%}
{%- endmacro %}

{#- numerator / denominator, 0.0 when the denominator is 0 (a quiet window has a rate of 0, not null). -#}
{% macro safe_rate(numerator, denominator) -%}
    case when {{ denominator }} > 0 then cast({{ numerator }} as double) / {{ denominator }} else 0.0 end
{%- endmacro %}

{#- Empirical-Bayes smoothed rate (k + m * prior) / (n + m). -#}
{% macro smoothed_rate(successes, trials, prior, strength) -%}
    (cast({{ successes }} as double) + {{ strength }} * coalesce({{ prior }}, 0.0)) / ({{ trials }} + {{ strength }})
{%- endmacro %}
