"""Period A: the rolling 7d/30d windows of every feature view, through dbt and Feast's point-in-time join.

The story (timelines.py, WINDOW_EVENTS), all known on the day it happened:

    10-05 12:00  u_win sees p_win (beauty), clicks, orders 2 x 10.00   (click and order each landed twice)
    10-05 13:00  u_win sees p_win2 (toys)
    10-06 09:00  u_win sees p_win again
    prices: p_win 10.00 until 8.00 (-20%) from 10-06; p_win2 30.00.  m_win rating 4.5 (live on 10-05),
    4.0 from 10-12; two products.

A training row at D+1 06:00 reads the feature rows of day D. The 7d window of D is D-6..D, the 30d window
D-29..D, so the events of 10-05 leave the 7d windows after 10-11 and the 30d windows after 11-03; the event
of 10-06 is *not* in day 10-05's row (nothing from D+1), and leaves after 10-12 / 11-04.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from .conftest import VIEWS
from .expected import (
    NO_MERCHANT,
    NO_PRODUCT,
    NO_USER,
    NO_USER_CATEGORY,
    assert_rows,
    merchant_row,
    product_row,
    user_category_row,
    user_row,
)
from .timelines import M_WIN, P_WIN, P_WIN2, U_WIN, WINDOW_ORDER_GMV, day

G = WINDOW_ORDER_GMV
# the smoothed product rates: (k + m * prior) / (n + m), m = 100 for the 7d CTR and 20 for the 30d CVR, prior
# = the global rate of all products over the same window (period B has no events in these windows):
#   7d CTR prior: 10-05 1 click / 2 impressions; 10-06..10-11 1/3; 10-12 0/1; later no impressions -> 0
#   30d CVR prior: 1 order / 1 click until 11-03; later no clicks -> 0
CTR_PRIOR_1005, CTR_PRIOR_1006 = 1 / 2, 1 / 3

# fmt: off
#                               feature_date D:  10-05     10-06     10-11     10-12  10-13  11-03  11-04  11-05
DAYS = [day(d) for d in ("2026-10-05", "2026-10-06", "2026-10-11", "2026-10-12", "2026-10-13",
                         "2026-11-03", "2026-11-04", "2026-11-05")]
USER = {
    "impressions_7d":                             (2,        3,        3,        1,     0,     0,     0,     0),
    "clicks_7d":                                  (1,        1,        1,        0,     0,     0,     0,     0),
    "impressions_30d":                            (2,        3,        3,        3,     3,     3,     1,     0),
    "clicks_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
    "orders_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
    "spend_30d":                                  (G,        G,        G,        G,     G,     G,     0,     0),
}
USER_BEAUTY = {
    "impressions_30d":                            (1,        2,        2,        2,     2,     2,     1,     0),
    "clicks_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
    "orders_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
}
USER_TOYS = {
    "impressions_30d":                            (1,        1,        1,        1,     1,     1,     0,     0),
}
P_WIN_ROWS = {
    "price":                                      (10.0,     8.0,      8.0,      8.0,   8.0,   8.0,   8.0,   8.0),
    "discount_pct":                               (0.0,      0.2,      0.2,      0.2,   0.2,   0.2,   0.2,   0.2),
    "impressions_7d":                             (1,        2,        2,        1,     0,     0,     0,     0),
    "clicks_7d":                                  (1,        1,        1,        0,     0,     0,     0,     0),
    "ctr_7d": ((1 + 100 * CTR_PRIOR_1005) / (1 + 100),
               (1 + 100 * CTR_PRIOR_1006) / (2 + 100),
               (1 + 100 * CTR_PRIOR_1006) / (2 + 100),    0.0,   0.0,   0.0,   0.0,   0.0),
    "impressions_30d":                            (1,        2,        2,        2,     2,     2,     1,     0),
    "clicks_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
    "orders_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
    "cvr_30d":                                    (1.0,      1.0,      1.0,      1.0,   1.0,   1.0,   0.0,   0.0),
    "gmv_30d":                                    (G,        G,        G,        G,     G,     G,     0,     0),
}
P_WIN2_ROWS = {
    "price":                                      (30.0,     30.0,     30.0,     30.0,  30.0,  30.0,  30.0,  30.0),
    "impressions_7d":                             (1,        1,        1,        0,     0,     0,     0,     0),
    "ctr_7d": ((0 + 100 * CTR_PRIOR_1005) / (1 + 100),
               (0 + 100 * CTR_PRIOR_1006) / (1 + 100),
               (0 + 100 * CTR_PRIOR_1006) / (1 + 100),    0.0,   0.0,   0.0,   0.0,   0.0),
    "impressions_30d":                            (1,        1,        1,        1,     1,     1,     0,     0),
    # no click of its own: the smoothed CVR is the prior (1 order / 1 click) while the window holds a click
    "cvr_30d":                                    (1.0,      1.0,      1.0,      1.0,   1.0,   1.0,   0.0,   0.0),
}
MERCHANT = {
    "rating":                                     (4.5,      4.5,      4.5,      4.0,   4.0,   4.0,   4.0,   4.0),
    "is_live":                                    (1,        0,        0,        0,     0,     0,     0,     0),
    "gmv_7d":                                     (G,        G,        G,        0,     0,     0,     0,     0),
    "gmv_30d":                                    (G,        G,        G,        G,     G,     G,     0,     0),
    "orders_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
    "impressions_30d":                            (2,        3,        3,        3,     3,     3,     1,     0),
    "clicks_30d":                                 (1,        1,        1,        1,     1,     1,     0,     0),
}
# fmt: on


def column(table: dict[str, tuple], i: int, prefix: str = "") -> dict[str, object]:
    return {f"{prefix}{name}": values[i] for name, values in table.items()}


def expected_training_rows(i: int, d) -> dict[str, dict[str, object]]:
    user = user_row(U_WIN, d, **column(USER, i))
    user_clicks = USER["clicks_30d"][i]
    merchant = merchant_row(M_WIN, d, product_count=2, **column(MERCHANT, i))
    return {
        f"{d} beauty": user
        | user_category_row(user_clicks_30d=user_clicks, **column(USER_BEAUTY, i))
        | product_row(P_WIN, d, **column(P_WIN_ROWS, i))
        | merchant,
        f"{d} toys": user
        | user_category_row(user_clicks_30d=user_clicks, **column(USER_TOYS, i))
        | product_row(P_WIN2, d, **column(P_WIN2_ROWS, i))
        | merchant,
    }


def test_windows_hold_exactly_the_events_of_their_days(world):
    rows, expected = [], {}
    for i, d in enumerate(DAYS):
        read_at = datetime.combine(d + timedelta(days=1), time(6), tzinfo=UTC)  # D+1 06:00 UTC
        keys = {"user_id": U_WIN, "merchant_id": M_WIN, "at": read_at}
        rows.append({"row": f"{d} beauty", "product_id": P_WIN, "category_l1": "beauty", **keys})
        rows.append({"row": f"{d} toys", "product_id": P_WIN2, "category_l1": "toys", **keys})
        expected |= expected_training_rows(i, d)
    assert_rows(world.join(rows), expected)


def test_labels_of_the_first_day_see_no_features_yet(world):
    """Day 10-05's rows become true at 10-06 00:00: the impressions of 10-05 find nothing before them."""
    labels = world.labels().loc[["imp_win_1", "imp_win_2", "imp_win_3"]]
    rows = [
        {"row": r.impression_id, "at": r.event_timestamp, "user_id": r.user_id, "product_id": r.product_id,
         "merchant_id": r.merchant_id, "category_l1": r.category_l1}
        for r in labels.itertuples()
    ]  # fmt: skip
    nothing = NO_USER | NO_USER_CATEGORY | NO_PRODUCT | NO_MERCHANT
    seen_on_1006 = expected_training_rows(0, DAYS[0])[f"{DAYS[0]} beauty"]  # imp_win_3 reads day 10-05
    assert_rows(world.join(rows), {"imp_win_1": nothing, "imp_win_2": nothing, "imp_win_3": seen_on_1006})


def test_training_builds_the_same_rows_with_its_own_defaults(world):
    """training.dataset's join (feature service ctr_model_v1, the configured created-timestamp filter)."""
    from training.config import TrainConfig
    from training.dataset import ENTITY_COLUMNS, historical_features

    cfg = TrainConfig()
    assert cfg.filter_by_created_timestamp is True, "training must never read rows created after the label"
    views = [p.name for p in world.store.get_feature_service(cfg.feature_service).feature_view_projections]
    assert sorted(views) == sorted(VIEWS)
    labels = world.labels().loc[["imp_win_1", "imp_win_3"]].reset_index(drop=True)
    frame = historical_features(
        world.store, labels[list(ENTITY_COLUMNS)], cfg.feature_service, cfg.filter_by_created_timestamp
    )
    names = [ref.split(":")[1] for ref in world.features_of(views)]
    actual = {r["impression_id"]: {n: r[n] for n in names} for r in frame.to_dict("records")}
    nothing = NO_USER | NO_USER_CATEGORY | NO_PRODUCT | NO_MERCHANT
    seen_on_1006 = expected_training_rows(0, DAYS[0])[f"{DAYS[0]} beauty"]
    assert_rows(actual, {"imp_win_1": nothing, "imp_win_3": seen_on_1006})
