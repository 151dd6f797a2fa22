-- The quality report: quarantined rows by source table and reason, with the share of the landed rows.
{%- set checked_models = {
    'users': 'stg_users_checked',
    'merchants': 'stg_merchants_checked',
    'products': 'stg_products_checked',
    'product_prices': 'stg_product_prices_checked',
    'merchant_daily': 'stg_merchant_daily_checked',
    'campaign_calendar': 'stg_campaign_calendar_checked',
    'impressions': 'stg_impressions_checked',
    'clicks': 'stg_clicks_checked',
    'orders': 'stg_orders_checked',
} %}

with landed_counts as (
    {%- for source_table, checked_model in checked_models.items() %}
    select '{{ source_table }}' as source_table, count(*) as landed_rows
    from {{ ref(checked_model) }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

rejected_counts as (
    select source_table, reason, count(*) as quarantined_rows
    from {{ ref('quarantine_events') }}
    group by source_table, reason
)

select
    rejected_counts.source_table,
    rejected_counts.reason,
    rejected_counts.quarantined_rows,
    landed_counts.landed_rows,
    cast(rejected_counts.quarantined_rows as double) / landed_counts.landed_rows as quarantined_share
from rejected_counts
inner join landed_counts on rejected_counts.source_table = landed_counts.source_table
order by rejected_counts.source_table asc, rejected_counts.quarantined_rows desc, rejected_counts.reason asc
