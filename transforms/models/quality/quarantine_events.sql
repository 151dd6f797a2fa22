-- Every raw row staging rejected, one row per rejected row (a duplicate copy included), with its reason.
-- Counted, never silently dropped: landed rows = staged rows + quarantined rows, per source table.
{%- set text = string_type() %}
{%- set checked_tables = [
    ('users', 'stg_users_checked', "user_id"),
    ('merchants', 'stg_merchants_checked', "merchant_id"),
    ('products', 'stg_products_checked', "product_id"),
    ('product_prices', 'stg_product_prices_checked',
        "coalesce(product_id, '') || '|' || coalesce(cast(price_date as " ~ text ~ "), '')"),
    ('merchant_daily', 'stg_merchant_daily_checked',
        "coalesce(merchant_id, '') || '|' || coalesce(cast(snapshot_date as " ~ text ~ "), '')"),
    ('campaign_calendar', 'stg_campaign_calendar_checked',
        "coalesce(cast(calendar_date as " ~ text ~ "), '') || '|' || coalesce(campaign_name, '')"),
    ('impressions', 'stg_impressions_checked', "impression_id"),
    ('clicks', 'stg_clicks_checked', "click_id"),
    ('orders', 'stg_orders_checked', "order_id"),
] %}

with rejected_rows as (
    {%- for source_table, checked_model, record_id in checked_tables %}
    select
        '{{ source_table }}' as source_table,
        cast({{ record_id }} as {{ string_type() }}) as record_id,
        reject_reason as reason,
        _ingested_at
    from {{ ref(checked_model) }}
    where reject_reason is not null
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select * from rejected_rows
