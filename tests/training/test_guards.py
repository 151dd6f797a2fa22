"""The leakage guard: unit behaviour, and a planted leak blocked through the real training path."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pytest

from platform_common.registry import CHAMPION, connect, version_by_alias
from platform_common.settings import Settings
from training.guards import leakage_guard
from training.promotion import promote
from training.train import train
from training.trainset import Augment


def simulated(n_requests: int = 3000, seed: int = 1):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_requests), 8)
    p_true = 1 / (1 + np.exp(-(rng.normal(-3.2, 1.0, len(groups)))))
    y = rng.random(len(groups)) < p_true
    return y.astype(int), p_true, groups, rng


def test_an_honest_noisy_model_passes():
    y, p_true, groups, rng = simulated()
    p_model = 1 / (1 + np.exp(-(np.log(p_true / (1 - p_true)) + rng.normal(0, 0.7, len(y)))))
    result = leakage_guard(y, p_model, p_true, groups)
    assert result.passed, result.reason
    assert result.auc_gap < 0


def test_a_model_that_saw_the_label_fails():
    y, p_true, groups, _ = simulated()
    result = leakage_guard(y, 0.5 * p_true + 0.5 * y, p_true, groups)
    assert not result.passed
    assert result.ci_low > 0
    assert "information from after the label" in result.reason


# The classic leak: the clicks of the request, counting the very impression being labelled. (The user's clicks of
# the whole UTC day, the leak planted before, is too diluted at tiny since sessions raised the oracle's AUC to
# ~0.80: its model beat the oracle by +0.015, interval -0.009..+0.039, not a detectable leak at that size.)
SAME_DAY_CLICKS_INCLUDING_THIS_ONE = Augment(
    {"request_clicks": "cast(sum(clicked) over (partition by request_id) as double)"}
)


def test_planted_leak_is_blocked_and_promotion_refuses_it(tiny_platform, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_platform.home_dir, home, ignore=shutil.ignore_patterns("logs", "bentoml-*"))
    settings = Settings(home=home, scale="tiny")
    client = connect(settings)
    champion_before = version_by_alias(client, settings.model_name, CHAMPION).version
    assert client.get_model_version(settings.model_name, champion_before).tags["leakage_guard"] == "passed"

    result = train(settings=settings, augment=SAME_DAY_CLICKS_INCLUDING_THIS_ONE)
    assert not result.guard_passed
    assert result.metrics["test_auc"] > result.metrics["oracle_auc"]
    assert mlflow.MlflowClient(settings.tracking_uri).get_run(result.run_id).info.status == "FAILED"

    decision = promote(settings)
    assert not decision.promoted
    assert "information from after the label" in decision.reason
    assert version_by_alias(client, settings.model_name, CHAMPION).version == champion_before
    tags = client.get_model_version(settings.model_name, result.model_version).tags
    assert tags["promotion_decision"] == "refused"
    assert tags["leakage_guard"] == "failed"


@pytest.mark.parametrize("n_boot", [50])
def test_guard_is_deterministic(n_boot):
    y, p_true, groups, _ = simulated(500)
    a = leakage_guard(y, p_true * 0.9, p_true, groups, n_boot=n_boot)
    b = leakage_guard(y, p_true * 0.9, p_true, groups, n_boot=n_boot)
    assert a == b


def test_fast_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from training.guards import fast_auc

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    p = rng.integers(0, 20, 2000) / 20  # many ties
    assert fast_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def _resampled_gaps(y, p_model, p_oracle, groups, n_boot, seed=0):
    """The bootstrap as first written: concatenate the drawn requests' rows and rank them each time."""
    from training.guards import fast_auc

    _, group_idx = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(group_idx, kind="stable"), np.cumsum(np.bincount(group_idx))[:-1])
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if y[idx].min() == y[idx].max():
            continue
        gaps.append(fast_auc(y[idx], p_model[idx]) - fast_auc(y[idx], p_oracle[idx]))
    return np.percentile(gaps, [2.5, 97.5])


def test_the_weighted_bootstrap_equals_resampling_the_rows_with_ties():
    """The guard weights each row by how often its request was drawn instead of copying the rows: the same
    replicates, so the same interval (here with tied scores and requests of unequal size)."""
    rng = np.random.default_rng(5)
    y, p_true, groups, _ = simulated(800)
    p_model = np.round(p_true + rng.normal(0, 0.02, len(p_true)), 2)  # rounded: many ties
    p_oracle = np.round(p_true, 3)
    groups = groups * 7 // 10  # some requests of 8 rows, some of 16
    assert len(set(np.bincount(groups))) == 2
    result = leakage_guard(y, p_model, p_oracle, groups, n_boot=60, seed=4)
    low, high = _resampled_gaps(y, p_model, p_oracle, groups, n_boot=60, seed=4)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert result.ci_low < result.auc_gap < result.ci_high
