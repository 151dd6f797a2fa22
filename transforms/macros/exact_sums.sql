{#- Order-insensitive sums of doubles. DuckDB adds doubles in whatever order its threads combine partial
    sums, so a double sum can differ in the last bits from one build to the next and the marts would not be
    byte-identical for the same raw data. Here each value is scaled by 2^60 (exact: a power of two) into a
    128-bit integer, the integers are added exactly in any order, and the total is scaled back once. A value
    of magnitude 2^-8 or more keeps every bit (so a one-row sum is the value itself); smaller ones lose the
    bits below 2^-60, about 1e-18. Totals up to 2^67 (1.5e20) fit; beyond, DuckDB raises an overflow error
    rather than a wrong number. Sums of integers are exact already and need none of this. -#}

{% macro fixed_point(expression) -%}
    cast(({{ expression }}) * {{ 2 ** 60 }} as {{ fixed_point_type() }})
{%- endmacro %}

{% macro from_fixed_point(expression) -%}
    cast({{ expression }} as double) / {{ 2 ** 60 }}
{%- endmacro %}

{#- sum(expression) [filter (where filter)] [over over] as a double, independent of the summing order. -#}
{% macro exact_sum(expression, filter=none, over=none) -%}
    {%- set total -%}
        sum({{ fixed_point(expression) }})
        {%- if filter %} filter (where {{ filter }}){% endif %}
        {%- if over %} over {{ over }}{% endif %}
    {%- endset -%}
    {{ from_fixed_point(total) }}
{%- endmacro %}

{#- avg(expression) [over over] from an exact sum; null when no value is non-null, like avg. -#}
{% macro exact_avg(expression, over=none) -%}
    {{ exact_sum(expression, over=over) }}
    / nullif(count({{ expression }}){% if over %} over {{ over }}{% endif %}, 0)
{%- endmacro %}
