-- One row per valid campaign day (a date may in principle carry more than one campaign).
{{ passed_rows('stg_campaign_calendar_checked') }}
