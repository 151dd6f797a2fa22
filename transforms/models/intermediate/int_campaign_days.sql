-- One row per campaign date (several campaigns on one date are joined by ' + ').
select
    calendar_date,
    {{ ordered_string_agg('campaign_name', "' + '", 'campaign_name') }} as campaign_name,
    bool_or(is_mega_sale) as is_mega_sale
from {{ ref('stg_campaign_calendar') }}
group by calendar_date
