-- One row per valid merchant x snapshot_date.
{{ passed_rows('stg_merchant_daily_checked') }}
