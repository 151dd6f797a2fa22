-- One row per valid merchant.
{{ passed_rows('stg_merchants_checked') }}
