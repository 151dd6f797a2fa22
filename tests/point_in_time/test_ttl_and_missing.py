"""Missing features: values older than a view's TTL, and entities with no history (yet, or at all).

TTL (feature_repo/features.py): a row with event_timestamp T serves training rows at T .. T + ttl, both ends
included; one microsecond later it is missing. The data ends on 11-14, whose rows became true at 11-15 00:00,
then the daily batch stops: after 11-17 00:00 the 2-day views go missing, after 11-22 00:00 the merchant too.
"""

from __future__ import annotations

from datetime import timedelta

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
from .timelines import (
    DATA_END,
    M_NOBODY,
    M_TTL,
    M_WIN,
    P_NEW,
    P_NOBODY,
    P_TTL,
    U_NEW,
    U_NOBODY,
    U_TTL,
    day,
    utc,
)

TTL = {
    "user_features": timedelta(days=2),
    "user_category_features": timedelta(days=2),
    "product_features": timedelta(days=2),
    "merchant_features": timedelta(days=7),
}


def test_ttls_are_the_documented_ones(world):
    """docs/time_semantics.md and the timelines below assume these: change all three together."""
    assert {name: world.store.get_feature_view(name).ttl for name in TTL} == TTL


def ttl_story_day(d: str) -> tuple[dict[str, object], ...]:
    """(user, user x home, product, merchant) rows of u_ttl, p_ttl (home) and m_ttl for feature_date d (11-13
    or 11-14). Period B has no clicks, so the smoothed product rates and their priors are 0."""
    seen = {"2026-11-13": 1, "2026-11-14": 2}[d]  # u_ttl saw p_ttl on 11-13 and 11-14
    rating, live = {"2026-11-13": (4.0, 0), "2026-11-14": (4.2, 1)}[d]  # snapshots of 11-10 and 11-14
    return (
        user_row(U_TTL, day(d), impressions_7d=seen, impressions_30d=seen),
        user_category_row(impressions_30d=seen),
        # 36.00 (-10%) from 11-13; the home category's median is median(36.00, 10.00 of p_ttl2) = 23.00
        product_row(
            P_TTL,
            day(d),
            price=36.0,
            discount_pct=0.1,
            price_rel_category=36.0 / 23.0,
            impressions_7d=seen,
            impressions_30d=seen,
        ),  # fmt: skip
        merchant_row(M_TTL, day(d), rating=rating, is_live=live, impressions_30d=seen, product_count=2),
    )


def test_values_older_than_the_ttl_are_missing(world):
    on_13, on_14 = ttl_story_day("2026-11-13"), ttl_story_day("2026-11-14")
    gone = (NO_USER, NO_USER_CATEGORY, NO_PRODUCT)  # the three 2-day views
    last_row_true = utc("2026-11-15 00:00:00")
    assert day("2026-11-14") == DATA_END
    # fmt: off
    timeline = {
        # training row            timestamp (UTC)               user, user x home, product   merchant
        "11-14 noon":            ("2026-11-14 12:00:00",        *on_13),
        "last rows become true": ("2026-11-15 00:00:00",        *on_14),
        "exactly 2 days old":    ("2026-11-17 00:00:00",        *on_14),
        "2 days + 1 us":         ("2026-11-17 00:00:00.000001", *gone,                       on_14[3]),
        "exactly 7 days old":    ("2026-11-22 00:00:00",        *gone,                       on_14[3]),
        "7 days + 1 us":         ("2026-11-22 00:00:00.000001", *gone,                       NO_MERCHANT),
    }
    # fmt: on
    assert utc("2026-11-17 00:00:00") - last_row_true == TTL["user_features"]
    assert utc("2026-11-22 00:00:00") - last_row_true == TTL["merchant_features"]
    keys = {"user_id": U_TTL, "product_id": P_TTL, "merchant_id": M_TTL, "category_l1": "home"}
    rows = [{"row": name, "at": utc(instant), **keys} for name, (instant, *_) in timeline.items()]
    expected = {name: u | uc | p | m for name, (_, u, uc, p, m) in timeline.items()}
    assert_rows(world.join(rows), expected)


def test_entities_without_history_are_missing(world):
    """An id the data never saw; and u_new's first impression, on a product listed that morning."""
    labels = world.labels()
    first = labels.loc["imp_new_1"]
    assert (first.user_id, first.product_id, first.merchant_id, first.category_l1) == (U_NEW, P_NEW, M_WIN, "garden")
    rows = [
        {"row": "strangers", "at": utc("2026-11-10 12:00:00"),
         "user_id": U_NOBODY, "product_id": P_NOBODY, "merchant_id": M_NOBODY, "category_l1": "nothing"},
        # u_new signed up 11-12 08:00 and saw p_new (listed 07:00) at 10:00: their first rows are day 11-12's,
        # true from 11-13 00:00. m_win is old: its row of 11-11 (quiet for weeks, rating 4.0) is there.
        {"row": "imp_new_1", "at": first.event_timestamp,
         "user_id": U_NEW, "product_id": P_NEW, "merchant_id": M_WIN, "category_l1": "garden"},
        {"row": "u_new next midnight", "at": utc("2026-11-13 00:00:00"),
         "user_id": U_NEW, "product_id": P_NEW, "merchant_id": M_WIN, "category_l1": "garden"},
    ]  # fmt: skip
    d11, d12 = day("2026-11-11"), day("2026-11-12")
    expected = {
        "strangers": NO_USER | NO_USER_CATEGORY | NO_PRODUCT | NO_MERCHANT,
        "imp_new_1": NO_USER | NO_USER_CATEGORY | NO_PRODUCT | merchant_row(M_WIN, d11, rating=4.0, product_count=2),
        "u_new next midnight": user_row(U_NEW, d12, impressions_7d=1, impressions_30d=1)
        | user_category_row(impressions_30d=1)
        | product_row(P_NEW, d12, price=12.0, impressions_7d=1, impressions_30d=1)
        | merchant_row(M_WIN, d12, rating=4.0, impressions_30d=1, product_count=3),
    }
    assert_rows(world.join(rows), expected)
