"""The product -> category_l1 map the stream's click categories use, read from the raw landing zone.

One source for the processor and the backfill (so their rows stay identical): the raw `products` table as
landed, each product's `category_l1` as last landed (ties to the greatest name, so the answer does not depend on
file order). Rows without a product id or a category are skipped, as staging rejects them, and so is a category
name holding the list separator (`category_stream.SEPARATOR`), which could not be listed. The catalogue is a
dimension: it is read whole, whatever the backfill's `until` (the simulator lands the products table once, at
the end of its period, after the events that name them). A product missing from it gets
`category_stream.UNKNOWN_CATEGORY` (transforms/streaming/windows.py counts those clicks); with no products
landed at all every click does, which is logged, never an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from platform_common.category_stream import SEPARATOR

log = logging.getLogger("shoprank.stream")


def load_catalogue(raw_dir: Path) -> dict[str, str]:
    files = sorted((raw_dir / "products").glob("dt=*/*.parquet"))
    if not files:
        log.warning("no products landed under %s: every click's category is unknown", raw_dir)
        return {}
    with duckdb.connect() as con:
        rows = con.execute(
            """select product_id, category_l1 from read_parquet(?, union_by_name = true)
               where product_id is not null and category_l1 is not null and category_l1 <> ''
                 and strpos(category_l1, ?) = 0
               qualify row_number() over (partition by product_id order by _ingested_at desc nulls last,
                                          category_l1 desc) = 1""",
            [[str(f) for f in files], SEPARATOR],
        ).fetchall()
    return {str(p): str(c) for p, c in rows}
