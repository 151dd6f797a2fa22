-- One row per valid product x price_date.
{{ passed_rows('stg_product_prices_checked') }}
