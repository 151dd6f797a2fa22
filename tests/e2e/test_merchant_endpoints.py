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


def test_plan_answers_scenarios_side_by_side(service, merchant):  # noqa: F811
    body = {
        "merchant_id": merchant,
        "campaign": "payday",
        "scenarios": [{"name": "do nothing"}, {"name": "deep discount, live", "discount": 0.4, "live": True}],
    }
    r = httpx.post(f"{service}/merchant/plan", json=body, timeout=120)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["merchant_id"] == merchant and plan["day_kind"] == "campaign" and plan["days_ahead"] >= 1
    nothing, deep = plan["scenarios"]
    assert [nothing["name"], deep["name"]] == ["do nothing", "deep discount, live"]
    for s in plan["scenarios"]:
        assert 0 < s["gmv"]["low"] <= s["gmv"]["value"] <= s["gmv"]["high"]
        assert s["funnel"]["impressions"] > 0
    assert nothing["uplift_vs_do_nothing"]["value"] == 0.0
    assert deep["uplift_vs_do_nothing"]["low"] > 0  # a 40% discount and a live stream sell more on a payday


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"campaign": "payday", "scenarios": [{"name": "x", "discount": 0.95}]}, 400, "discount"),
        ({"campaign": "payday", "scenarios": [{"name": "x", "price_change": -0.9}]}, 400, "price_change"),
        ({"campaign": "payday", "scenarios": [{"name": "x", "traffic_share": 10}]}, 400, "traffic_share"),
        ({"campaign": "11.12"}, 400, "unknown campaign"),
        ({"campaign": "payday", "scenarios": [{"name": "x", "new_merchant_boost": 0.3}]}, 400, "younger than 30"),
        ({"campaign": "payday", "colour": "red"}, 400, "colour"),
        ({"campaign": "payday", "merchant_id": "m_nobody"}, 404, "unknown merchant"),
    ],
)
def test_plan_rejects_bad_levers_with_a_reason(service, established, body, status, reason):  # noqa: F811
    r = httpx.post(f"{service}/merchant/plan", json={"merchant_id": established} | body, timeout=60)
    assert r.status_code == status, r.text
    assert "error" in r.text and reason in r.text


@pytest.fixture(scope="module")
def established(tiny_platform):
    """A merchant older than 30 days (the new-merchant boost does not apply to it)."""
    with duckdb.connect() as con:
        return con.execute(
            "select merchant_id from read_parquet(?) group by 1 having min(merchant_age_days) > 60 order by 1 limit 1",
            [str(tiny_platform.marts_dir / "merchant_features.parquet")],
        ).fetchone()[0]
