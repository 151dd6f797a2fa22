"""`python -m training train` options are checked before any data is read: a bad value is one line."""

from __future__ import annotations

from typer.testing import CliRunner

from training.cli import app


def test_max_negatives_must_be_positive():
    result = CliRunner().invoke(app, ["train", "--max-negatives", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--max-negatives'" in result.output and "greater than or equal" in result.output
    assert "Traceback" not in result.output


def test_max_negatives_must_be_a_number():
    result = CliRunner().invoke(app, ["train", "--max-negatives", "many"])
    assert result.exit_code == 2
    assert "Invalid value for '--max-negatives'" in result.output and "valid integer" in result.output
