"""Hand-written experiment summaries, as `make experiment-report` writes them, for the promotion gate's tests."""

from __future__ import annotations

from typing import Any


def summary_dict(
    *,
    lift: float = 0.05,
    ci: tuple[float, float] = (0.02, 0.08),
    treatment_version: str | None = "4",
    control_version: str | None = "3",
    readable: bool = True,
    srm: float | None = 0.4,
    guardrails: list[dict[str, Any]] | None = None,
    design: str = "ab",
    experiment_id: str = "gmv-v4",
    estimable: bool | None = None,
) -> dict[str, Any]:
    """A summary.json as `make experiment-report` writes it (platform_common/experiment_summary.py)."""
    metric: dict[str, Any] = {"lift": lift, "ci_low": ci[0], "ci_high": ci[1], "p_value": 0.01, "true_lift": lift}
    if estimable is not None:  # an extra field of the analysis (serving/experiments/analysis.py)
        metric["estimable"] = estimable
    return {
        "id": experiment_id,
        "design": design,
        "control": "control",
        "treatment": "treatment",
        "arms": {
            "control": {"model_version": control_version, "requests": 5000, "users": 400},
            "treatment": {"model_version": treatment_version, "requests": 5010, "users": 401},
        },
        "srm_p_value": srm,
        "metrics": {"gmv_per_request": metric, "ctr": metric, "cvr": metric},
        "guardrails": guardrails
        if guardrails is not None
        else [
            {"name": "error_rate", "passed": True, "detail": "0.0% vs 0.0%"},
            {"name": "latency_p99", "passed": True, "detail": "12 ms vs 11 ms"},
        ],
        "readable": readable,
        "readable_reason": "pre-registered sample size reached" if readable else "4,000 of 10,000 requests",
    }
