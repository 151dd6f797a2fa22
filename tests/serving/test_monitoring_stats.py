"""The statistics of monitoring (serving/monitoring/stats.py): PSI, profiles, calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.monitoring import stats


def test_psi_is_zero_on_the_same_distribution_and_large_on_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = stats.numeric_profile(rng.normal(size=20_000))
    same = stats.psi(*stats.current_shares(ref, rng.normal(size=20_000)))
    shifted = stats.psi(*stats.current_shares(ref, rng.normal(0.7, 1, size=20_000)))
    assert same < 0.01
    assert shifted > 0.25


def test_psi_by_hand() -> None:
    # two bins, 50/50 -> 80/20: (0.3 ln 1.6) + (-0.3 ln 0.4)
    assert np.isclose(stats.psi([0.5, 0.5], [0.8, 0.2]), 0.3 * np.log(1.6) + 0.3 * np.log(2.5))


def test_a_zeroed_column_and_nulls_move_their_bins() -> None:
    x = np.linspace(1, 100, 1000)
    ref = stats.numeric_profile(x)
    assert ref["zero_share"] == 0.0
    assert stats.psi(*stats.current_shares(ref, np.zeros(1000))) > 1
    with_nulls = np.where(np.arange(1000) % 2 == 0, np.nan, x)
    _, cur = stats.current_shares(ref, with_nulls)
    assert np.isclose(cur[-1], 0.5)  # the null bin


def test_categorical_shares_pool_unseen_values() -> None:
    ref = stats.categorical_profile(pd.Series(["a"] * 60 + ["b"] * 40))
    reference, current = stats.current_shares(ref, pd.Series(["a"] * 50 + ["z"] * 50))
    assert reference == [0.6, 0.4, 0.0] and current == [0.5, 0.0, 0.5]


def test_ece_of_calibrated_and_of_scaled_predictions() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.2, 50_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert stats.ece(y, p) < 0.005
    assert stats.ece(y, np.minimum(p * 3, 1)) > 0.1
    assert np.isnan(stats.auc(np.zeros(10), np.ones(10)))
