-- One row per valid product.
{{ passed_rows('stg_products_checked') }}
