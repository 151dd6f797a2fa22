-- Nothing is silently dropped or duplicated by staging: per source table, the landed (raw) rows are
-- exactly the staged rows plus the quarantined rows. Fails with the tables where that does not hold.
{%- set tables = ['users', 'merchants', 'products', 'product_prices', 'merchant_daily', 'campaign_calendar',
                  'impressions', 'clicks', 'orders'] %}

with row_counts as (
    {%- for table in tables %}
    select
        '{{ table }}' as source_table,
        (select count(*) from {{ source('raw', table) }}) as landed_rows,
        (select count(*) from {{ ref('stg_' ~ table) }}) as staged_rows,
        (
            select count(*) from {{ ref('quarantine_events') }}
            where source_table = '{{ table }}'
        ) as quarantined_rows
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select *
from row_counts
where landed_rows != staged_rows + quarantined_rows
