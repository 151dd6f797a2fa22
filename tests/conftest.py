"""Shared fixtures. The `tiny_platform` fixture runs the real pipeline once per session through `make`.

The platforms a session needs (`tiny_platform`, and `prod_platform` from tests/prod) are built on background
threads from the end of collection, and the tests that need no platform run first: the builds and the fast tests
share the two cores instead of waiting on each other. The fixture joins its build; a failed build fails every test
that needs it, with the build's output.

`make test` runs two pytest-xdist workers (`-n 2`): a single process keeps one of the two cores
busy (most of an end-to-end test is waiting on a service, a live run or a subprocess). Every test goes to one of
two groups, so each platform is built once, by the worker that runs its tests, and no two processes share a
platform's state: `tiny` (the tests on `tiny_platform`) and `own` (everything else: the prod deployment, the tests
that build their own small worlds, the unit tests). A worker starts the builds of its group when its first test
arrives. Without xdist (`pytest tests/...`) nothing changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
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
    if hasattr(config, "workerinput") and GROUPS_FILE in os.environ:
        # each worker collects the same tests; the first to finish tells the controller's scheduler the groups
        groups = json.dumps({item.nodeid: shard(item) for item in items})
        target = Path(os.environ[GROUPS_FILE])
        scratch = target.with_name(f"{target.name}.{config.workerinput['workerid']}")
        scratch.write_text(groups)
        scratch.replace(target)  # whole or absent: the scheduler never reads half a map


# The groups reach xdist's scheduler through a file: its own `xdist_group` marker does not work with pytest 9.2 (it
# renames a node id through an attribute pytest no longer reads), and the controller does not collect.
GROUPS_FILE = "SHOPRANK_TEST_GROUPS_FILE"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        folder = Path(tempfile.mkdtemp(prefix="shoprank-test-groups-"))
        os.environ[GROUPS_FILE] = str(folder / "groups.json")  # inherited by the workers it is about to start


def pytest_unconfigure(config: pytest.Config) -> None:
    if GROUPS_FILE in os.environ and not hasattr(config, "workerinput"):
        shutil.rmtree(Path(os.environ.pop(GROUPS_FILE)).parent, ignore_errors=True)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scope scheduling with one scope per group: a worker gets a whole group (tests/conftest.py)."""

        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                self._groups = json.loads(Path(os.environ[GROUPS_FILE]).read_text())
            return self._groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


def sharded(config: pytest.Config) -> bool:
    """Running under pytest-xdist: the controller of `-n N` (N > 0) or one of its workers."""
    return bool(getattr(config.option, "numprocesses", None)) or hasattr(config, "workerinput")


def shard(item: pytest.Item) -> str:
    return "tiny" if "tiny_platform" in getattr(item, "fixturenames", ()) else "own"


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


def start_builds(config: pytest.Config, items: list[pytest.Item]) -> None:
    prebuilds = config.stash.setdefault(PREBUILDS, {})
    needed = set().union(*(set(getattr(item, "fixturenames", ())) for item in items))
    for name in sorted(PLATFORM_FIXTURES & needed):
        if name in STARTERS and name not in prebuilds:
            prebuilds[name] = STARTERS[name](config)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or sharded(session.config):
        return  # a worker learns its group from its first test (pytest_runtest_protocol)
    start_builds(session.config, session.items)


STARTED_GROUP = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Under xdist: on a worker's first test, start the builds its group needs (a test of the other group, should
    the scheduler send one, still gets its platform from the fixture, built then)."""
    config = item.config
    if not hasattr(config, "workerinput") or config.stash.get(STARTED_GROUP, False):
        return
    config.stash[STARTED_GROUP] = True
    group = shard(item)
    start_builds(config, [i for i in item.session.items if shard(i) == group])


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
