"""`analyse` on hand-made frames: attribution, per-arm sums, truth beside the estimate, readability, SRM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from platform_common.experiment_summary import ExperimentSummary, read_summary, write_summary
from serving.experiments.analysis import Design, analyse

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _design(**kw: object) -> Design:
    base = dict(
        id="exp",
        design="ab",
        shares={"control": 0.5, "treatment": 0.5},
        control="control",
        treatment="treatment",
        start=T0,
        end=T0 + timedelta(minutes=10),
        planned_stop=T0 + timedelta(minutes=10),
    )
    return Design(**(base | kw))  # type: ignore[arg-type]


def _world(seed: int, n_users: int = 400, lift: float = 0.5, split: float = 0.5, design: str = "ab"):
    """Users with 1-6 requests of 5 slots; treatment's true order probability is (1 + lift) x control's."""
    rng = np.random.default_rng(seed)
    exp, out, truth = [], [], []
    for u in range(n_users):
        arm = "treatment" if rng.random() < split else "control"
        for r in range(rng.integers(1, 7)):
            rid = f"r{u}-{r}"
            served = T0 + timedelta(seconds=float(rng.uniform(0, 600)))
            for pos in range(1, 6):
                credit = arm if design == "ab" else ("treatment" if pos % 2 else "control")
                p_click, p_order = 0.2, 0.1 * (1 + lift if credit == "treatment" else 1.0)
                pid = f"p{pos}"
                exp.append(
                    (rid, served, f"u{u}", arm if design == "ab" else "interleaved", pos, pid, credit, "1", None, 3.0)
                )
                truth.append((rid, pid, p_click, p_order, p_click * p_order * 10.0))
                if rng.random() < p_click:
                    out.append((rid, pid, "click", served + timedelta(seconds=5), 0.0))
                    if rng.random() < p_order:
                        out.append((rid, pid, "order", served + timedelta(minutes=20), 10.0))
    exposures = pd.DataFrame(
        exp,
        columns=[
            "request_id",
            "served_at",
            "user_id",
            "arm",
            "position",
            "product_id",
            "credit_arm",
            "model_version",
            "fallback",
            "latency_ms",
        ],
    )
    outcomes = pd.DataFrame(out, columns=["request_id", "product_id", "kind", "event_ts", "gmv"])
    truth_df = pd.DataFrame(
        truth, columns=["request_id", "product_id", "p_click", "p_order_given_click", "expected_gmv"]
    )
    return exposures, outcomes, truth_df


def test_ab_analysis_sums_attributes_and_puts_the_truth_beside_the_estimate(tmp_path) -> None:
    exposures, outcomes, truth = _world(5)
    pre = pd.DataFrame({"user_id": exposures["user_id"].unique(), "gmv": 1.0})
    a = analyse(
        _design(), exposures, outcomes, truth, pre, window=timedelta(hours=1), watermark=T0 + timedelta(hours=2),
        now=T0 + timedelta(hours=2),
    )  # fmt: skip
    s = a.summary
    assert set(s.arms) == {"control", "treatment"}
    assert sum(arm.requests for arm in s.arms.values()) == exposures["request_id"].nunique()
    assert sum(arm.users for arm in s.arms.values()) == exposures["user_id"].nunique()
    orders = int((outcomes["kind"] == "order").sum())
    assert sum(int(arm.model_extra["orders"]) for arm in s.arms.values()) == orders  # type: ignore[index]
    gmv = s.metrics["gmv_per_request"]
    assert gmv.true_lift == pytest.approx(0.5)
    assert gmv.ci_low <= 0.5 <= gmv.ci_high and gmv.ci_low > 0
    assert s.metrics["ctr"].true_lift == pytest.approx(0.0)
    assert s.metrics["cvr"].true_lift == pytest.approx(0.5)
    assert s.readable, s.readable_reason
    assert s.srm_p_value is not None and s.srm_p_value > 0.001
    assert {g.name for g in s.guardrails} >= {"sample ratio", "latency p99"}
    assert len(a.timeline) > 5 and a.timeline["requests"].is_monotonic_increasing
    # the contract round-trips through the file
    write_summary(tmp_path, s)
    back = read_summary(tmp_path, "exp")
    assert isinstance(back, ExperimentSummary) and back.metrics["gmv_per_request"].lift == pytest.approx(gmv.lift)


def test_outcomes_past_the_window_do_not_count_and_immature_requests_are_not_readable() -> None:
    exposures, outcomes, truth = _world(2)
    short = analyse(
        _design(),
        exposures,
        outcomes,
        truth,
        window=timedelta(minutes=10),
        watermark=T0 + timedelta(hours=2),
        now=T0 + timedelta(hours=2),
    )
    assert sum(int(a.model_extra["orders"]) for a in short.summary.arms.values()) == 0  # type: ignore[index]
    early = analyse(
        _design(),
        exposures,
        outcomes,
        truth,
        window=timedelta(hours=1),
        watermark=T0 + timedelta(minutes=30),
        now=T0 + timedelta(minutes=30),
    )
    assert not early.summary.readable and "attribution window" in early.summary.readable_reason
    running = analyse(
        _design(end=None),
        exposures,
        outcomes,
        truth,
        window=timedelta(hours=1),
        watermark=T0 + timedelta(hours=2),
        now=T0 + timedelta(hours=2),
    )
    assert not running.summary.readable and "still running" in running.summary.readable_reason
    early_stop = analyse(
        _design(stopped_early=True),
        exposures,
        outcomes,
        truth,
        window=timedelta(hours=1),
        watermark=T0 + timedelta(hours=2),
        now=T0 + timedelta(hours=2),
    )
    assert not early_stop.summary.readable and "peeking" in early_stop.summary.readable_reason


def test_a_broken_split_is_flagged_and_not_readable() -> None:
    exposures, outcomes, truth = _world(3, n_users=3000, lift=0.0, split=0.4)
    a = analyse(
        _design(),
        exposures,
        outcomes,
        truth,
        window=timedelta(hours=1),
        watermark=T0 + timedelta(hours=2),
        now=T0 + timedelta(hours=2),
    )
    assert a.summary.srm_p_value is not None and a.summary.srm_p_value < 1e-6
    assert not a.summary.readable and "sample-ratio" in a.summary.readable_reason
    assert not next(g for g in a.summary.guardrails if g.name == "sample ratio").passed


def test_interleaving_credits_each_slot_to_the_arm_that_placed_it() -> None:
    exposures, outcomes, truth = _world(4, lift=1.0, design="interleaving")
    a = analyse(
        _design(design="interleaving", shares={"control": 0.5, "treatment": 0.5}), exposures, outcomes, truth,
        window=timedelta(hours=1), watermark=T0 + timedelta(hours=2), now=T0 + timedelta(hours=2),
    )  # fmt: skip
    assert a.interleaving is not None
    orders = a.interleaving.set_index("outcome").loc["orders"]
    # odd slots (3 of 5) are the treatment's, with twice the order probability: it wins 6/8 of the orders
    assert orders["true_share"] == pytest.approx(0.75)
    assert orders["ci_low"] <= 0.75 <= orders["ci_high"]
    gmv = a.summary.metrics["gmv_per_request"]
    assert gmv.true_lift == pytest.approx(2.0)  # 3 slots at 2x vs 2 slots
    assert gmv.ci_low <= 2.0 <= gmv.ci_high
    assert a.summary.srm_p_value is None
