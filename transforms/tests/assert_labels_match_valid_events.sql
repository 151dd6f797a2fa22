-- Labels agree with the staged events: clicked/converted/order_gmv of every impression are recomputed
-- from stg_clicks and stg_orders, and an impression can only convert if it was clicked.
with clicks_per_impression as (
    select impression_id, count(*) as n_clicks
    from {{ ref('stg_clicks') }}
    group by impression_id
),

orders_per_impression as (
    select impression_id, count(*) as n_orders, sum(gmv) as gmv
    from {{ ref('stg_orders') }}
    group by impression_id
)

select
    impression_labels.impression_id,
    impression_labels.clicked,
    impression_labels.converted,
    impression_labels.order_gmv,
    clicks_per_impression.n_clicks,
    orders_per_impression.n_orders,
    orders_per_impression.gmv
from {{ ref('impression_labels') }} as impression_labels
left join clicks_per_impression on impression_labels.impression_id = clicks_per_impression.impression_id
left join orders_per_impression on impression_labels.impression_id = orders_per_impression.impression_id
where impression_labels.clicked != cast(coalesce(clicks_per_impression.n_clicks, 0) > 0 as integer)
    or impression_labels.converted != cast(coalesce(orders_per_impression.n_orders, 0) > 0 as integer)
    or abs(impression_labels.order_gmv - coalesce(orders_per_impression.gmv, 0.0)) > 1e-9
    or impression_labels.converted > impression_labels.clicked
