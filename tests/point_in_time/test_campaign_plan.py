"""The campaign plan view (issue 18, section 4): a day's plan is read only from the instant it landed.

product_campaign_plan carries each product's price list of day D and D's kind from the calendar, true from
greatest(D 00:00 UTC, the price row's landing). Unlike the daily marts (D's row true from D + 1 00:00), a plan
row is used on its own day, so the line is drawn to the microsecond: an impression one microsecond before the
price list landed reads the previous plan (or none), and a price row landing after its day is never a plan.

p_lp (base 60.00): 11-08 50.00 (landed 11-08 00:01) | 11-09 40.00 -20% (landed 11-11 08:00, after its day) |
11-10 45.00 -10% (landed 11-10 00:01). p_win2 (base 30.00): 11.11, a mega sale, 15.00 -50% (landed 00:07:30).
"""

from __future__ import annotations

from .expected import MISSING, assert_rows
from .timelines import P_LP, P_WIN2, utc

VIEWS = ("product_campaign_plan",)
PLAN_FEATURES = ("plan_day_kind", "plan_discount_pct", "plan_price", "plan_price_rel_base")
NO_PLAN = dict.fromkeys(PLAN_FEATURES, MISSING)


def plan(kind: int, discount: float, price: float, base: float) -> dict[str, object]:
    return dict(zip(PLAN_FEATURES, (kind, discount, price, price / base), strict=True))


LP_1108 = plan(0, 0.0, 50.0, 60.0)
LP_1110 = plan(0, 0.1, 45.0, 60.0)
WIN2_1111 = plan(2, 0.5, 15.0, 30.0)

# fmt: off
TIMELINE = [
    # training row                   product  timestamp (UTC)               reads
    ("lp before the 11-08 list",     P_LP,    "2026-11-08 00:00:59.999999", NO_PLAN),
    ("lp as the 11-08 list lands",   P_LP,    "2026-11-08 00:01:00",        LP_1108),
    # 11-09's list never landed on 11-09: the 11-08 plan is the newest one known all day
    ("lp on 11-09",                  P_LP,    "2026-11-09 12:00:00",        LP_1108),
    ("lp just before the 11-10 list", P_LP,   "2026-11-10 00:00:59.999999", LP_1108),
    ("lp on 11-10",                  P_LP,    "2026-11-10 09:00:00",        LP_1110),
    # the 11-09 list landed at 11-11 08:00, after its day: it is not a plan, and never replaces 11-10's
    ("lp after the late list",       P_LP,    "2026-11-11 09:00:00",        LP_1110),
    # two days after the 11-10 list landed, with none since: the TTL has run out, nothing is served
    ("lp two days later",            P_LP,    "2026-11-12 00:01:00.000001", NO_PLAN),
    # 11.11: before its list lands nothing (p_win2 had no earlier list); from 00:07:30 the mega sale's plan
    ("win2 on 11.11 before its list", P_WIN2, "2026-11-11 00:07:29.999999", NO_PLAN),
    ("win2 as the 11.11 list lands", P_WIN2,  "2026-11-11 00:07:30",        WIN2_1111),
    ("win2 late on 11.11",           P_WIN2,  "2026-11-11 23:59:59.999999", WIN2_1111),
]
# fmt: on


def test_a_plan_is_read_from_the_instant_it_landed_and_never_before(world):
    rows = [{"row": name, "at": utc(instant), "product_id": product} for name, product, instant, _ in TIMELINE]
    assert_rows(world.join(rows, VIEWS), {name: want for name, _, _, want in TIMELINE})


def test_the_plan_mart_holds_no_row_known_before_its_day_or_after_it(world):
    import duckdb

    path = world.marts_dir / "product_campaign_plan.parquet"
    with duckdb.connect() as con:
        rows = con.execute(
            "select product_id, plan_date, event_timestamp, created_timestamp, plan_day_kind "
            "from read_parquet(?) order by product_id, plan_date",
            [str(path)],
        ).fetchall()
    by_key = {(r[0], str(r[1])): r for r in rows}
    # the late 11-09 list of p_lp is left out; every other price row is one plan row
    assert (P_LP, "2026-11-09") not in by_key
    assert {(P_LP, "2026-11-08"), (P_LP, "2026-11-10"), (P_WIN2, "2026-11-11")} <= set(by_key)
    for _product, plan_date, event_ts, created_ts, _kind in rows:
        assert event_ts == created_ts
        assert str(event_ts.astimezone(utc("2026-01-01 00:00:00").tzinfo).date()) == str(plan_date)
    assert by_key[(P_WIN2, "2026-11-11")][4] == 2
