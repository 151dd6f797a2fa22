"""Monitoring thresholds (serving/monitoring/config.py): defaults load, a bad file is one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.monitoring.cli import app
from serving.monitoring.config import DEFAULT_PATH, ThresholdError, Thresholds, load_thresholds


def test_the_shipped_file_is_the_defaults() -> None:
    assert load_thresholds(DEFAULT_PATH) == Thresholds()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("drift:\n  psi_alert: -1\n", "drift.psi_alert"),
        ("model_quality:\n  ece_max: lots\n", "model_quality.ece_max"),
        ("data_quality:\n  row_count_min_ratio: 1.5\n", "data_quality.row_count_min_ratio"),
        ("features:\n  missing_shares: 0.1\n", "features.missing_shares"),
        ("freshness:\n  view_sla_hours:\n    user_features: soon\n", "freshness.view_sla_hours.user_features"),
    ],
)
def test_a_bad_threshold_names_its_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "t.yml"
    path.write_text(text)
    with pytest.raises(ThresholdError) as err:
        load_thresholds(path)
    message = str(err.value)
    assert f": {field}: " in message and "\n" not in message


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("drift: [unclosed\n")
    (tmp_path / "b.yml").write_text("- 1\n- 2\n")
    with pytest.raises(ThresholdError, match="not YAML"):
        load_thresholds(tmp_path / "a.yml")
    with pytest.raises(ThresholdError, match="expected a mapping"):
        load_thresholds(tmp_path / "b.yml")


def test_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("drift:\n  bins: 1\n")
    result = CliRunner().invoke(app, ["--thresholds", str(path), "--no-mlflow"])
    assert result.exit_code == 2
    assert "drift.bins" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["--day", "yesterday", "--no-mlflow"])
    assert result.exit_code == 2 and "--day" in result.output
