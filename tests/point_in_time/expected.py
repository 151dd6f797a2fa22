"""Expected training-row values, one whole row per feature view, and the comparison the tests use.

The builders only do bookkeeping arithmetic (a 0-safe rate, days since a date); every count, price, rating and
smoothed rate is written by hand in the tests.
"""

from __future__ import annotations

import math
from datetime import date

import pandas as pd

from .timelines import MERCHANTS, PRODUCTS, USERS

MISSING = None  # expected value meaning "Feast found no row": NaN / None / NA in the frame


def _rate(k: float, n: float) -> float:
    return k / n if n > 0 else 0.0  # the marts' safe_rate: a window with no denominator has a rate of 0


def _days(since: date, on: date) -> int:
    return max((on - since).days, 0)


def user_row(
    user: str,
    feature_date: date,
    *,
    impressions_7d: int = 0,
    clicks_7d: int = 0,
    impressions_30d: int = 0,
    clicks_30d: int = 0,
    orders_30d: int = 0,
    spend_30d: float = 0.0,
    clicked_log_price_rel_30d: float = 0.0,
    price_lift_30d: float = 0.0,
) -> dict[str, object]:
    country, device, signup = next((c, d, s) for u, c, d, s in USERS if u == user)
    return {
        "country": country,
        "device": device,
        "user_impressions_7d": impressions_7d,
        "user_clicks_7d": clicks_7d,
        "user_ctr_7d": _rate(clicks_7d, impressions_7d),
        "user_impressions_30d": impressions_30d,
        "user_clicks_30d": clicks_30d,
        "user_ctr_30d": _rate(clicks_30d, impressions_30d),
        "user_orders_30d": orders_30d,
        "user_spend_30d": spend_30d,
        "user_days_since_signup": _days(signup.date(), feature_date),
        "user_clicked_log_price_rel_30d": clicked_log_price_rel_30d,
        "user_price_lift_30d": price_lift_30d,
    }


def user_category_row(
    *, impressions_30d: int = 0, clicks_30d: int = 0, orders_30d: int = 0, user_clicks_30d: int = 0
) -> dict[str, object]:
    return {
        "uc_impressions_30d": impressions_30d,
        "uc_clicks_30d": clicks_30d,
        "uc_orders_30d": orders_30d,
        "uc_click_share_30d": _rate(clicks_30d, user_clicks_30d),
    }


def product_row(
    product: str,
    feature_date: date,
    *,
    price: float,
    discount_pct: float = 0.0,
    price_rel_category: float = 1.0,
    impressions_7d: int = 0,
    clicks_7d: int = 0,
    ctr_7d: float = 0.0,
    impressions_30d: int = 0,
    clicks_30d: int = 0,
    orders_30d: int = 0,
    cvr_30d: float = 0.0,
    gmv_30d: float = 0.0,
) -> dict[str, object]:
    merchant, category, created = next((m, c, t) for p, m, c, _, _, t in PRODUCTS if p == product)
    return {
        "product_merchant_id": merchant,
        "product_category_l1": category,
        "price": price,
        "discount_pct": discount_pct,
        "price_rel_category": price_rel_category,
        "product_impressions_7d": impressions_7d,
        "product_clicks_7d": clicks_7d,
        "product_ctr_7d": ctr_7d,
        "product_impressions_30d": impressions_30d,
        "product_clicks_30d": clicks_30d,
        "product_orders_30d": orders_30d,
        "product_cvr_30d": cvr_30d,
        "product_gmv_30d": gmv_30d,
        "product_age_days": _days(created.date(), feature_date),
    }


def merchant_row(
    merchant: str,
    feature_date: date,
    *,
    rating: float | None,
    is_live: int = 0,
    gmv_7d: float = 0.0,
    gmv_30d: float = 0.0,
    orders_30d: int = 0,
    impressions_30d: int = 0,
    clicks_30d: int = 0,
    product_count: int,
) -> dict[str, object]:
    tier, joined = next((t, j) for m, t, _, j in MERCHANTS if m == merchant)
    return {
        "merchant_tier": tier,
        "merchant_rating": rating,
        "merchant_is_live": is_live,
        "merchant_gmv_7d": gmv_7d,
        "merchant_gmv_30d": gmv_30d,
        "merchant_orders_30d": orders_30d,
        "merchant_ctr_30d": _rate(clicks_30d, impressions_30d),
        "merchant_cvr_30d": _rate(orders_30d, clicks_30d),
        "merchant_product_count": product_count,
        "merchant_age_days": _days(joined.date(), feature_date),
    }


# feature names of each view, from the builders (any row will do: only the keys are used)
_D = date(2026, 11, 1)
USER_FEATURES = list(user_row(USERS[0][0], _D))
USER_CATEGORY_FEATURES = list(user_category_row())
PRODUCT_FEATURES = list(product_row(PRODUCTS[0][0], _D, price=1.0))
MERCHANT_FEATURES = list(merchant_row(MERCHANTS[0][0], _D, rating=1.0, product_count=0))
NO_USER = dict.fromkeys(USER_FEATURES, MISSING)
NO_USER_CATEGORY = dict.fromkeys(USER_CATEGORY_FEATURES, MISSING)
NO_PRODUCT = dict.fromkeys(PRODUCT_FEATURES, MISSING)
NO_MERCHANT = dict.fromkeys(MERCHANT_FEATURES, MISSING)


# --- comparing -------------------------------------------------------------------------------------------


def is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def same(actual: object, expected: object) -> bool:
    if expected is MISSING:
        return is_missing(actual)
    if is_missing(actual):
        return False
    if isinstance(expected, str):
        return actual == expected
    return math.isclose(float(actual), float(expected), rel_tol=1e-12, abs_tol=1e-12)


def assert_rows(actual: dict[str, dict[str, object]], expected: dict[str, dict[str, object]]) -> None:
    """Every returned value equals its expected one, and every returned feature has an expectation."""
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    problems: list[str] = []
    for row, want in expected.items():
        got = actual[row]
        if set(got) != set(want):
            problems.append(
                f"{row}: returned but not expected {sorted(set(got) - set(want))}, "
                f"expected but not returned {sorted(set(want) - set(got))}"
            )
            continue
        problems += [f"{row}.{n}: got {got[n]!r}, expected {v!r}" for n, v in want.items() if not same(got[n], v)]
    assert not problems, f"{len(problems)} wrong value(s):\n" + "\n".join(problems)
