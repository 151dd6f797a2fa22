import numpy as np
import pytest

from training.metrics import binary_metrics, expected_calibration_error


def test_ece_is_zero_for_perfectly_calibrated_bins():
    p = np.repeat([0.1, 0.5], 1000)
    y = np.concatenate([np.r_[np.ones(100), np.zeros(900)], np.r_[np.ones(500), np.zeros(500)]])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.0, abs=1e-12)


def test_ece_measures_overconfidence():
    y = np.r_[np.ones(50), np.zeros(950)]  # true rate 5%
    assert expected_calibration_error(y, np.full(1000, 0.15), n_bins=5) == pytest.approx(0.10)


def test_binary_metrics_rejects_single_class():
    with pytest.raises(ValueError, match="single class"):
        binary_metrics(np.zeros(10), np.full(10, 0.1), "x")


def test_binary_metrics_names_and_values():
    m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), "test")
    assert set(m) == {"test_auc", "test_logloss", "test_ece"}
    assert m["test_auc"] == 1.0
