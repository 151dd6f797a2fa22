"""The campaign planner's pieces on small frames: the Poisson fixed-effects fit, the calendar, lever validation."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from pydantic import ValidationError

from merchant_growth.errors import http_status
from merchant_growth.plan_schemas import Levers, PlanRequest
from merchant_growth.planner import InvalidScenarioError, campaign_date, day_kind, poisson_fe


def _synthetic(seed: int, n_groups: int = 300, n_days: int = 30) -> tuple[np.ndarray, ...]:
    """Counts with a group effect correlated with the covariate (so a pooled fit would be biased)."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_groups), n_days)
    day = np.tile(np.arange(n_days), n_groups)
    alpha = rng.normal(0.0, 1.0, n_groups)
    x1 = rng.random(len(group)) * 0.5 + 0.3 * alpha[group]  # correlated with the fixed effect
    x2 = (day % 7 >= 5).astype(float)
    x3 = np.ones(len(group))  # no variation within a group: not identified
    exposure = rng.integers(50, 500, len(group)).astype(float)
    mu = exposure * np.exp(-3.0 + alpha[group] + 1.5 * x1 - 0.4 * x2)
    y = rng.poisson(mu).astype(float)
    return y, np.log(exposure), np.stack([x1, x2, x3], 1), group, day


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_fe_recovers_coefficients_within_their_interval(seed: int) -> None:
    y, offset, x, group, day = _synthetic(seed)
    fit = poisson_fe(y, offset, x, group, day)
    se = np.sqrt(np.diag(fit.cov))
    assert fit.identified.tolist() == [True, True, False]
    assert abs(fit.beta[0] - 1.5) < 4 * se[0] and se[0] < 0.1
    assert abs(fit.beta[1] + 0.4) < 4 * se[1] and se[1] < 0.05
    assert fit.beta[2] == 0.0 and fit.cov[2, 2] == 0.0


def test_poisson_fe_ignores_groups_without_any_count() -> None:
    y, offset, x, group, day = _synthetic(3)
    silent = group < 20
    y2 = np.where(silent, 0.0, y)
    x2 = x.copy()
    x2[silent, 0] = 50.0  # would wreck the fit if these rows counted
    a, b = (
        poisson_fe(y2, offset, x2, group, day),
        poisson_fe(y[~silent], offset[~silent], x[~silent], group[~silent], day[~silent]),
    )
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-8)


def test_campaign_dates_are_the_next_after_the_data() -> None:
    assert campaign_date("11.11", date(2026, 11, 10)) == date(2026, 11, 11)
    assert campaign_date("11.11", date(2026, 11, 11)) == date(2027, 11, 11)
    assert campaign_date("payday", date(2026, 11, 29)) == date(2026, 12, 25)
    assert campaign_date("1.1", date(2026, 12, 31)) == date(2027, 1, 1)
    assert [day_kind(date(2026, m, d)) for m, d in ((11, 11), (3, 3), (11, 25), (11, 12))] == [
        "mega",
        "campaign",
        "campaign",
        "normal",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"campaign": "11.12"}, "unknown campaign '11.12'"),
        ({"campaign": "black friday"}, "unknown campaign"),
        ({"scenarios": [{"name": "deep", "discount": 0.95}]}, "scenarios.0.discount"),
        ({"scenarios": [{"name": "neg", "discount": -0.1}]}, "scenarios.0.discount"),
        ({"scenarios": [{"name": "dear", "price_change": 0.8}]}, "scenarios.0.price_change"),
        ({"scenarios": [{"name": "flood", "traffic_share": 5}]}, "scenarios.0.traffic_share"),
        ({"scenarios": [{"name": "boost", "new_merchant_boost": 2}]}, "scenarios.0.new_merchant_boost"),
        ({"scenarios": [{"name": "x", "colour": "red"}]}, "scenarios.0.colour"),
        ({"scenarios": [{"name": "a"}, {"name": "a"}]}, "scenario names must be unique"),
        ({"scenarios": []}, "scenarios"),
        ({"merchant_id": "m 1"}, "merchant_id"),
    ],
)
def test_bad_levers_are_rejected_naming_the_field(body: dict, field: str) -> None:
    request = {"merchant_id": "m00001", "campaign": "11.11"} | body
    with pytest.raises(ValidationError) as info:
        PlanRequest.model_validate(request)
    message = str(info.value)
    assert field.split(".")[-1] in message and field.split(".")[0] in message
    assert http_status(info.value) == 400


def test_good_levers_pass_and_data_checks_are_400() -> None:
    request = PlanRequest.model_validate(
        {
            "merchant_id": "m00001",
            "campaign": " 11.11 ",
            "scenarios": [{"name": "deep, live", "discount": 0.9, "live": True}],
        }
    )
    assert request.campaign == "11.11" and request.scenarios == [Levers(name="deep, live", discount=0.9, live=True)]
    assert http_status(InvalidScenarioError("boost for an old merchant")) == 400
