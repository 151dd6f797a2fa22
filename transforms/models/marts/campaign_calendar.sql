-- Campaign days, exported for the ranking service: whether "today" is a campaign day is request
-- context the model was trained with (impression_labels.is_campaign_day), so serving reads the same calendar.
select calendar_date, campaign_name, is_mega_sale
from {{ ref('int_campaign_days') }}
-- a fixed row order, so the same raw data gives a byte-identical parquet file
order by calendar_date
