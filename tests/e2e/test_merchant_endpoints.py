"""The merchant endpoints on the running service: answers for a real merchant, clear 4xx for bad input."""

from __future__ import annotations

import duckdb
import httpx
import pytest

from tests.e2e.test_platform import service  # noqa: F401  (the module-scoped running service)


@pytest.fixture(scope="module")
def merchant(tiny_platform):
    with duckdb.connect() as con:
        return con.execute(
            "select merchant_id from read_parquet(?) group by 1 order by count(*) desc limit 1",
            [str(tiny_platform.marts_dir / "impression_labels.parquet")],
        ).fetchone()[0]


def test_diagnose_answers_with_an_exact_decomposition(service, merchant):  # noqa: F811
    r = httpx.post(
        f"{service}/merchant/diagnose", json={"merchant_id": merchant, "explain_with_model": False}, timeout=120
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["merchant_id"] == merchant
    assert "decomposition" in body
    # issue 18: funnels from the merchant panels, an interval on every part, a decision that says when it is noise
    assert body["funnel_source"] == "panel" and body["funnel_a"]["orders"] > 0
    intervals = body["decomposition"]["intervals"]
    for part in ("traffic", "ctr", "cvr", "aov", "delta"):
        assert intervals[part]["low"] <= intervals[part]["high"]
    assert body["primary_cause"] != "no_clear_cause" or body["decomposition"]["distinguishable_parts"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/merchant/diagnose", {"merchant_id": "m_nobody"}, 404),
        ("/merchant/diagnose", {"merchant_id": 5}, 400),
        ("/merchant/diagnose", {"merchant_id": "m00001", "colour": "red"}, 400),
        (
            "/merchant/diagnose",
            {
                "merchant_id": "m00001",
                "period_a": {"start": "2026-11-10", "end": "2026-11-16"},
                "period_b": {"start": "2026-11-01", "end": "2026-11-07"},
            },
            400,
        ),
        ("/merchant/forecast", {"merchant_id": "m_nobody"}, 404),
        ("/merchant/forecast", {}, 400),
    ],
)
def test_bad_merchant_requests_get_a_clear_4xx(service, path, body, status):  # noqa: F811
    r = httpx.post(f"{service}{path}", json=body, timeout=60)
    assert r.status_code == status, r.text
    assert "error" in r.text
