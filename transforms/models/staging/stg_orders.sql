-- One row per valid order (earliest landed copy) on a valid click of a valid impression.
{{ passed_rows('stg_orders_checked') }}
