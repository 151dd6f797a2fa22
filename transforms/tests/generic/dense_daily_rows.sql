{#- Dense rows: every entity (`entity_columns`) has exactly one row per day from its first `date_column`
    to the last day of the data (int_data_bounds.data_end_date), no gap and no row after the end.
    Fails with one row per entity that breaks it. -#}
{% test dense_daily_rows(model, entity_columns, date_column='feature_date') %}
    {%- set entity_csv = entity_columns | join(', ') %}

    with entity_ranges as (
        select
            {{ entity_csv }},
            count(*) as n_rows,
            count(distinct {{ date_column }}) as n_days,
            min({{ date_column }}) as first_date,
            max({{ date_column }}) as last_date
        from {{ model }}
        group by {{ entity_csv }}
    ),

    data_bounds as (
        select data_end_date from {{ ref('int_data_bounds') }}
    )

    select entity_ranges.*
    from entity_ranges
    cross join data_bounds
    where entity_ranges.last_date != data_bounds.data_end_date
        or entity_ranges.n_rows != entity_ranges.n_days
        or entity_ranges.n_days != {{ days_diff('entity_ranges.last_date', 'entity_ranges.first_date') }} + 1
{% endtest %}
