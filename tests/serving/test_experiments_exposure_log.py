"""The exposure log writes every offered request, one row per served slot, with the credited arm's scores."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from serving.experiments.exposure_log import ArmServed, Exposure, ExposureLog


def scores(base: float, n: int) -> dict[str, np.ndarray]:
    return {k: base + np.arange(n) / 100 for k in ("pctr", "pcvr", "pctcvr", "expected_gmv")}


def exposure(request_id: str, design: str, order: list[int], credit: list[str]) -> Exposure:
    arms = {
        "control": ArmServed("champion", "m", "1", None, scores(0.1, 4), np.arange(4) + 10.0),
        "treatment": ArmServed("3", "m", "1", "v3 could not be loaded: OSError", scores(0.5, 4), np.arange(4) + 20.0),
    }
    return Exposure(
        request_id=request_id,
        served_at=datetime(2026, 11, 30, 23, 59, tzinfo=UTC),
        experiment_id="e1",
        design=design,
        user_id="u1",
        surface="home_feed",
        objective="gmv",
        new_merchant_boost=0.0,
        arm="interleaved" if design == "interleaving" else credit[0],
        product_ids=["p0", "p1", "p2", "p3"],
        order=order,
        credit=credit,
        arms={a: arms[a] for a in set(credit)},
    )


def test_every_request_every_slot_with_its_arms_scores(tmp_path):
    log = ExposureLog(tmp_path, flush_seconds=0.1)
    assert log.offer(exposure("r1", "ab", [2, 0, 3, 1], ["control"] * 4))
    assert log.offer(exposure("r2", "interleaving", [1, 3, 0, 2], ["treatment", "control", "control", "treatment"]))
    log.close()
    files = list((tmp_path / "e1" / "dt=2026-11-30").glob("*.parquet"))
    assert files and not list(tmp_path.rglob(".*.tmp"))
    rows = pd.concat(pd.read_parquet(f) for f in files).sort_values(["request_id", "position"])
    assert log.written == 8 and log.dropped == 0 and len(rows) == 8
    ab = rows[rows["request_id"] == "r1"]
    assert list(ab["product_id"]) == ["p2", "p0", "p3", "p1"] and list(ab["position"]) == [1, 2, 3, 4]
    assert list(ab["pctr"]) == pytest.approx([0.12, 0.1, 0.13, 0.11]) and list(ab["score"]) == [12.0, 10.0, 13.0, 11.0]
    assert set(ab["fallback"].isna()) == {True}
    tdi = rows[rows["request_id"] == "r2"]
    assert list(tdi["credit_arm"]) == ["treatment", "control", "control", "treatment"]
    assert list(tdi["product_id"]) == ["p1", "p3", "p0", "p2"]
    # Each slot carries the scores of the arm that placed it.
    assert list(tdi["expected_gmv"]) == pytest.approx([0.51, 0.13, 0.1, 0.52])
    assert list(tdi["score"]) == [21.0, 13.0, 10.0, 22.0]
    assert list(tdi["arm_target"]) == ["3", "champion", "champion", "3"]
    assert tdi["fallback"].notna().tolist() == [True, False, False, True]
    assert set(tdi["arm"]) == {"interleaved"} and set(tdi["n_candidates"]) == {4}
