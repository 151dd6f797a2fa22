"""Shared fixtures. The `tiny_platform` fixture runs the real pipeline once per session through `make`.

The platforms a session needs (`tiny_platform`, and `prod_platform` from tests/prod) are built on background
threads from the end of collection, and the tests that need no platform run first: the builds and the fast tests
share the two cores instead of waiting on each other. The fixture joins its build; a failed build fails every test
that needs it, with the build's output.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from platform_common.settings import REPO_ROOT, Settings

PIPELINE_TARGETS = ("data", "features", "apply", "materialize", "train", "promote")

# A test is end to end when it needs a whole platform built through make (or the soak); everything else is the
# fast inner loop, `make test-fast` (pytest -m "not e2e"). Marked here from the fixtures a test uses, so a new test
# on `tiny_platform` cannot forget the marker.
PLATFORM_FIXTURES = frozenset({"tiny_platform", "prod_platform"})
E2E_FOLDERS = frozenset({"e2e", "prod", "stress", "spark"})
# Tests that run dbt or Feast's engines for real on a small hand-made world (tens of seconds each): not a whole
# platform, but not the seconds-long inner loop either; `make test-fast` leaves them out too.
INTEGRATION_PATHS = ("point_in_time/", "transforms/", "platform_common/test_feast_fast_engine.py")


def is_e2e(item: pytest.Item) -> bool:
    folder = Path(str(item.path)).relative_to(REPO_ROOT / "tests").parts[0]
    return folder in E2E_FOLDERS or bool(PLATFORM_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if is_e2e(item):
            item.add_marker(pytest.mark.e2e)
        elif Path(str(item.path)).relative_to(REPO_ROOT / "tests").as_posix().startswith(INTEGRATION_PATHS):
            item.add_marker(pytest.mark.integration)
    # Fast tests first (stable: files keep their order), while the platforms build in the background.
    items.sort(key=is_e2e)


class Prebuild:
    """One platform's pipeline on a background thread; `wait()` returns what it built or raises how it failed."""

    def __init__(self, name: str, build: Callable[[], Any], cleanup: Callable[[], None] | None = None) -> None:
        self.name, self._build, self.cleanup = name, build, cleanup
        self.claimed = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"prebuild-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._build()
        except BaseException as exc:  # handed to the fixture that waits, in the test thread
            self._error = exc

    def wait(self) -> Any:
        self.claimed = True
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


# name of a platform fixture -> how to start its build (tests/prod/conftest.py registers the prod one)
STARTERS: dict[str, Callable[[pytest.Config], Prebuild]] = {}
PREBUILDS = pytest.StashKey[dict[str, Prebuild]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    prebuilds = session.config.stash.setdefault(PREBUILDS, {})
    if session.config.option.collectonly:
        return
    needed = set().union(*(set(getattr(item, "fixturenames", ())) for item in session.items))
    for name in sorted(PLATFORM_FIXTURES & needed):
        if name in STARTERS and name not in prebuilds:
            prebuilds[name] = STARTERS[name](session.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A build no test claimed (a run stopped early) is waited for and cleaned up, never left half-made."""
    for prebuild in session.config.stash.get(PREBUILDS, {}).values():
        if not prebuild.claimed and prebuild.cleanup is not None:
            with contextlib.suppress(BaseException):  # a failed build is cleaned up all the same
                prebuild.wait()
            try:
                prebuild.cleanup()
            except Exception as exc:  # servers gone: say so, the session's outcome stands
                print(f"cleanup of the unclaimed {prebuild.name} build failed: {exc}")


def prebuild(config: pytest.Config, name: str) -> Prebuild:
    """The session's build of platform `name`, started now if collection did not start it."""
    prebuilds = config.stash.setdefault(PREBUILDS, {})
    if name not in prebuilds:
        prebuilds[name] = STARTERS[name](config)
    return prebuilds[name]


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


def start_tiny_platform(config: pytest.Config) -> Prebuild:
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    home = factory.mktemp("shoprank-home")

    def build() -> Path:
        run_make(home, *PIPELINE_TARGETS)
        return home

    return Prebuild("tiny_platform", build)


STARTERS["tiny_platform"] = start_tiny_platform


@pytest.fixture(scope="session")
def tiny_platform(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """simulate -> dbt build -> feast apply -> materialize -> train -> promote, at SCALE=tiny."""
    home = prebuild(request.config, "tiny_platform").wait()
    old = os.environ.get("SHOPRANK_HOME")
    os.environ["SHOPRANK_HOME"] = str(home)
    try:
        yield Settings(home=home, scale="tiny")
    finally:
        if old is None:
            os.environ.pop("SHOPRANK_HOME", None)
        else:
            os.environ["SHOPRANK_HOME"] = old
