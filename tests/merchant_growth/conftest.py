"""A private copy of the session's tiny platform for the tests that register models, so the shared home keeps
exactly the state the other suites expect (one registered model)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from platform_common.settings import Settings


@pytest.fixture(scope="module")
def growth_home(tiny_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("merchant-growth-home") / "home"
    shutil.copytree(tiny_platform.home_dir, home, ignore=shutil.ignore_patterns("logs", "dbt"))
    yield Settings(home=home, scale="tiny")
