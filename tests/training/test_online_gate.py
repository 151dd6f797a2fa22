"""The online part of the promotion gate on hand-made summaries: each rule at its boundary, each refusal's reason.

The same gate on a real registry (accepted, refused, bad input) is in tests/training/test_promotion.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from platform_common.experiment_summary import ExperimentSummary
from training import online_gate
from training.online_gate import OnlineRule

from .summaries import summary_dict


def run(candidate: str = "4", champion: str | None = "3", rule: OnlineRule = OnlineRule.SUPERIOR, **kw: Any):
    summary = ExperimentSummary.model_validate(summary_dict(**kw))
    return {name: (ok, detail) for name, ok, detail in online_gate.online_checks(summary, candidate, champion, rule)}


def failed(results: dict[str, tuple[bool, str]]) -> set[str]:
    return {name for name, (ok, _) in results.items() if not ok}


def test_a_significant_lift_on_the_candidate_passes_every_check():
    results = run()
    assert not failed(results), results
    assert set(results) == {
        "experiment tested the candidate",
        "experiment's control was the champion",
        "experiment readable",
        "sample ratio",
        "online GMV/request lift",
        "guardrail error_rate",
        "guardrail latency_p99",
    }
    assert results["online GMV/request lift"][1].startswith("+5.00% [+2.00%, +8.00%], p=0.01")


@pytest.mark.parametrize(
    ("ci", "superior", "non_inferior"),
    [
        ((0.001, 0.05), True, True),  # wholly above zero
        ((0.0, 0.05), False, True),  # touches zero: not significantly positive
        ((-0.02, 0.05), False, True),  # straddles zero
        ((-0.05, 0.0), False, True),  # touches zero from below: not significantly negative
        ((-0.05, -0.001), False, False),  # wholly below zero
    ],
)
def test_the_two_rules_at_their_boundaries(ci, superior, non_inferior):
    lift = (ci[0] + ci[1]) / 2
    assert run(ci=ci, lift=lift)["online GMV/request lift"][0] is superior
    assert run(ci=ci, lift=lift, rule=OnlineRule.NON_INFERIOR)["online GMV/request lift"][0] is non_inferior


@pytest.mark.parametrize(
    ("kw", "check", "says"),
    [
        ({"lift": -0.04, "ci": (-0.07, -0.01)}, "online GMV/request lift", "-4.00% [-7.00%, -1.00%]"),
        ({"lift": 0.01, "ci": (-0.02, 0.04)}, "online GMV/request lift", "needs ci_low > 0"),
        ({"treatment_version": "2"}, "experiment tested the candidate", "served v2; the candidate is v4 (VERSION=2"),
        ({"treatment_version": None}, "experiment tested the candidate", "served several versions"),
        ({"control_version": "1"}, "experiment's control was the champion", "served v1; the champion is v3"),
        ({"readable": False}, "experiment readable", "4,000 of 10,000 requests"),
        ({"srm": 0.0001}, "sample ratio", "p=0.0001 (needs >= 0.001)"),
        ({"srm": None}, "sample ratio", "no sample-ratio test"),
        (
            {"guardrails": [{"name": "latency_p99", "passed": False, "detail": "treatment 250 ms > 100 ms"}]},
            "guardrail latency_p99",
            "treatment 250 ms > 100 ms",
        ),
        ({"guardrails": []}, "guardrails", "none was measured"),
        # the analysis's widest interval when an arm has no order: refused under either rule
        ({"lift": 0.0, "ci": (-1.0, 1e9), "estimable": False}, "online GMV/request lift", "not estimable"),
    ],
)
def test_each_refusal_names_its_reason(kw, check, says):
    results = run(**kw)
    assert failed(results) == {check}, results
    assert says in results[check][1]


def test_no_estimate_is_no_evidence_under_either_rule():
    kw = {"lift": 0.0, "ci": (-1.0, 1e9), "estimable": False}
    assert failed(run(rule=OnlineRule.NON_INFERIOR, **kw)) == {"online GMV/request lift"}
    assert not failed(run(rule=OnlineRule.NON_INFERIOR, **kw | {"estimable": True}))  # the same numbers, estimated


def test_interleaving_has_no_split_to_test_and_no_champion_skips_the_control_check():
    results = run(design="interleaving", srm=None, champion=None)
    assert not failed(results)
    assert "sample ratio" not in results and "experiment's control was the champion" not in results


def test_figures_keep_what_the_audit_needs():
    summary = ExperimentSummary.model_validate(summary_dict(srm=0.31))
    figures = online_gate.online_figures(summary, OnlineRule.NON_INFERIOR)
    assert figures | {"guardrails": None} == {
        "experiment": "gmv-v4",
        "design": "ab",
        "rule": "non-inferior",
        "treatment_version": "4",
        "control_version": "3",
        "lift": 0.05,
        "ci_low": 0.02,
        "ci_high": 0.08,
        "p_value": 0.01,
        "true_lift": 0.05,
        "srm_p_value": 0.31,
        "readable": True,
        "guardrails": None,
    }
    assert figures["guardrails"] == {"error_rate": True, "latency_p99": True}


def test_the_gate_reads_experiments_where_the_service_stores_them():
    """training may not import serving; the two constants it copies must not drift."""
    from serving.experiments import model, store

    assert online_gate.EXPERIMENT_TAG_PREFIX == store.TAG_PREFIX
    assert online_gate.ID_PATTERN.pattern == model.ID_PATTERN
