-- One row per valid impression (earliest landed copy).
{{ passed_rows('stg_impressions_checked') }}
