"""Errors of the merchant growth API, each with the HTTP status an endpoint should map it to.

| error | when | HTTP |
|---|---|---|
| `pydantic.ValidationError` (a `ValueError`) | malformed request: bad id, bad dates, period order | 400 |
| `InvalidPeriodError` (a `ValueError`) | well-formed periods outside the data | 400 |
| `UnknownMerchantError` (a `LookupError`) | the merchant is not in the marts | 404 |
| `NotReadyError` (a `RuntimeError`) | marts not built, no champion forecast model, no features | 503 |
"""

from __future__ import annotations


class MerchantGrowthError(Exception):
    """Base class; `http_status` is the status an endpoint should answer with."""

    http_status = 500


class UnknownMerchantError(MerchantGrowthError, LookupError):
    http_status = 404

    def __init__(self, merchant_id: str) -> None:
        super().__init__(f"unknown merchant {merchant_id!r}: it has no rows in the merchant growth marts")
        self.merchant_id = merchant_id


class InvalidPeriodError(MerchantGrowthError, ValueError):
    http_status = 400


class NotReadyError(MerchantGrowthError, RuntimeError):
    http_status = 503


def http_status(exc: BaseException) -> int:
    """The status an endpoint should answer with for an exception raised by this package."""
    if isinstance(exc, MerchantGrowthError):
        return exc.http_status
    if isinstance(exc, ValueError):  # pydantic.ValidationError included
        return 400
    return 500
