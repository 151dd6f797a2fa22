"""Bad requests are refused with a clear message: ValueError (HTTP 400) or LookupError (HTTP 404)."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from merchant_growth import (
    DiagnoseRequest,
    ForecastRequest,
    InvalidPeriodError,
    NotReadyError,
    Period,
    UnknownMerchantError,
    http_status,
)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"merchant_id": ""}, "merchant_id"),
        ({"merchant_id": "m 1"}, "merchant_id"),
        ({"merchant_id": "m/../1"}, "merchant_id"),
        ({"merchant_id": "m" * 65}, "merchant_id"),
        ({"merchant_id": 12}, "merchant_id"),
        ({"merchant_id": "m1", "coupon": "x"}, "coupon"),
        ({"merchant_id": "m1", "period_b": {"start": "2026-11-10", "end": "2026-11-01"}}, "after its end"),
        ({"merchant_id": "m1", "period_b": {"start": "2026-13-10", "end": "2026-11-01"}}, "period_b"),
        ({"merchant_id": "m1", "period_b": {"start": "yesterday", "end": "2026-11-01"}}, "period_b"),
        ({"merchant_id": "m1", "period_b": ["2026-01-01", "2026-12-31"]}, "at most"),
        ({"merchant_id": "m1", "period_b": ["2026-11-01"]}, "two dates"),
        ({"merchant_id": "m1", "period_a": ["2026-11-01", "2026-11-07"]}, "period_b is required"),
        (
            {"merchant_id": "m1", "period_a": ["2026-11-05", "2026-11-11"], "period_b": ["2026-11-08", "2026-11-14"]},
            "must end before",
        ),
        (
            {"merchant_id": "m1", "period_a": ["2026-11-15", "2026-11-21"], "period_b": ["2026-11-01", "2026-11-07"]},
            "must end before",
        ),
        ({"merchant_id": "m1", "top_products": 0}, "top_products"),
    ],
)
def test_bad_diagnose_requests_are_400(body, needle):
    with pytest.raises(ValidationError) as err:
        DiagnoseRequest.model_validate(body)
    assert needle in str(err.value)
    assert isinstance(err.value, ValueError) and http_status(err.value) == 400


def test_periods_accept_pairs_strings_and_dicts():
    expected = Period(start=date(2026, 11, 1), end=date(2026, 11, 7))
    assert Period.model_validate(("2026-11-01", "2026-11-07")) == expected
    assert Period.model_validate("2026-11-01:2026-11-07") == expected
    assert Period.model_validate({"start": "2026-11-01", "end": "2026-11-07"}) == expected
    assert expected.days == 7 and len(expected.dates()) == 7
    ok = DiagnoseRequest(merchant_id=" m00034 ", period_b=("2026-11-08", "2026-11-14"))
    assert ok.merchant_id == "m00034" and ok.period_a is None


def test_forecast_request_and_error_statuses():
    with pytest.raises(ValidationError):
        ForecastRequest.model_validate({"merchant_id": "m1", "horizon": 14})
    assert http_status(UnknownMerchantError("m9")) == 404
    assert isinstance(UnknownMerchantError("m9"), LookupError)
    assert http_status(InvalidPeriodError("outside")) == 400
    assert isinstance(InvalidPeriodError("outside"), ValueError)
    assert http_status(NotReadyError("no champion")) == 503
    assert http_status(RuntimeError("boom")) == 500
