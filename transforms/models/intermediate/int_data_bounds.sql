-- One row: the first and last feature_date of the data. The last is var('data_end_date') when given,
-- else the last UTC day on which a valid impression happened (events of that day that land after
-- midnight are not knowable by its end and count from the next, unpublished, day).
with impression_dates as (
    select
        min({{ utc_date('event_ts') }}) as first_event_date,
        max({{ utc_date('event_ts') }}) as last_event_date
    from {{ ref('stg_impressions') }}
)

select
    first_event_date as data_start_date,
    {%- if var('data_end_date') %}
    cast('{{ var("data_end_date") }}' as date) as data_end_date
    {%- else %}
    last_event_date as data_end_date
    {%- endif %}
from impression_dates
