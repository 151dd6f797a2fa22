-- Price of each product on each day of its spine: the price row of that day, else the last earlier one
-- (as-of join), among the rows landed by the end of that day; else its base price with no discount; and the
-- price relative to the median price of its category that day.
with product_days as (
    select product_id, feature_date
    from {{ ref('int_product_days') }}
),

products as (
    select product_id, category_l1, base_price
    from {{ ref('stg_products') }}
),

-- A price row is usable from its known date, greatest(price_date, landing date): one landing late must not
-- reach back into rows already published. It never replaces a newer price_date known before it, so only the
-- rows holding the newest price_date known by their own known date are kept.
prices as (
    select product_id, price_date, price, discount_pct, known_date
    from (
        select
            product_id, price_date, price, discount_pct,
            greatest(price_date, {{ utc_date('_ingested_at') }}) as known_date
        from {{ ref('stg_product_prices') }}
    )
    qualify price_date = max(price_date) over (
            partition by product_id order by known_date range between unbounded preceding and current row
        )
),

prices_as_of_day as (
    {{ asof_left_join('product_days', 'prices', ['product_id'], 'feature_date', 'known_date',
        {'price': 'prices.price', 'discount_pct': 'prices.discount_pct'}) }}
),

product_day_prices as (
    select
        prices_as_of_day.product_id,
        prices_as_of_day.feature_date,
        products.category_l1,
        coalesce(prices_as_of_day.price, products.base_price) as price,
        coalesce(prices_as_of_day.discount_pct, 0.0) as discount_pct
    from prices_as_of_day
    inner join products on prices_as_of_day.product_id = products.product_id
)

select
    product_id,
    feature_date,
    category_l1,
    price,
    discount_pct,
    price / median(price) over (partition by category_l1, feature_date) as price_rel_category
from product_day_prices
