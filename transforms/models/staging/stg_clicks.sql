-- One row per valid click (earliest landed copy) on a valid impression.
{{ passed_rows('stg_clicks_checked') }}
