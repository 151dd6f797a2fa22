"""Shared fixtures. The `tiny_platform` fixture runs the real pipeline once per session through `make`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_common.settings import REPO_ROOT, Settings

PIPELINE_TARGETS = ("data", "features", "apply", "materialize", "train", "promote")

# A test is end to end when it needs a whole platform built through make (or the soak); everything else is the
# fast inner loop, `make test-fast` (pytest -m "not e2e"). Marked here from the fixtures a test uses, so a new test
# on `tiny_platform` cannot forget the marker.
PLATFORM_FIXTURES = frozenset({"tiny_platform", "prod_platform"})
E2E_FOLDERS = frozenset({"e2e", "prod", "stress"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(REPO_ROOT / "tests").parts[0]
        if folder in E2E_FOLDERS or PLATFORM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def run_make(home: Path, *targets: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ) | {"SHOPRANK_HOME": str(home), "SCALE": "tiny"} | (extra_env or {})
    env.pop("SHOPRANK_SCALE", None)
    proc = subprocess.run(
        ["make", "--no-print-directory", *targets], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"make {' '.join(targets)} failed ({proc.returncode})\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """simulate -> dbt build -> feast apply -> materialize -> train -> promote, at SCALE=tiny."""
    home = tmp_path_factory.mktemp("shoprank-home")
    run_make(home, *PIPELINE_TARGETS)
    old = os.environ.get("SHOPRANK_HOME")
    os.environ["SHOPRANK_HOME"] = str(home)
    try:
        yield Settings(home=home, scale="tiny")
    finally:
        if old is None:
            os.environ.pop("SHOPRANK_HOME", None)
        else:
            os.environ["SHOPRANK_HOME"] = old
