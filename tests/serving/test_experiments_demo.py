"""`make demo-experiment`'s command line: a bad control arm is a usage error naming the option, before anything runs."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from serving.experiments.demo import main


def test_a_control_that_is_neither_a_version_nor_an_alias_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, ["--control", "v1 or v2", "--stream"])
    assert result.exit_code == 2
    assert "--control" in result.output and "neither a version" in result.output
    assert not (tmp_path / "experiments").exists()  # nothing started
