"""Fixtures of the prod-profile suite: the real pipeline on real Redis and PostgreSQL.

Every session gets its own deployment: a database `shoprank_test_<id>` (schemas `feast` and `mlflow`) and a Feast
project of the same name, whose Redis keys all end with it; both are dropped at the end. A missing server fails
the run with a message saying how to start it: the suite never skips.

`SHOPRANK_PG_PASSWORD` is set to a canary when the environment has none (trust authentication ignores it), so
the tests can check that the password never reaches a file, a log or the output of a command.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from platform_common.connections import (
    BackendUnavailableError,
    check_redis,
    drop_postgres,
    drop_redis_project,
    ensure_postgres,
)
from platform_common.settings import REPO_ROOT, Settings
from tests.conftest import PIPELINE_TARGETS, STARTERS, Prebuild, prebuild

SERVERS_HELP = (
    "The prod-profile tests (tests/prod, `make test-prod`) run against real servers and never skip. "
    "Start them (see docs/beyond_one_machine.md) or point SHOPRANK_REDIS_URL / SHOPRANK_PG_HOST / "
    "SHOPRANK_PG_PORT at running ones."
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "prod: needs Redis and PostgreSQL (the prod profile); `-m 'not prod'` to leave out"
    )


@dataclass(frozen=True)
class Deployment:
    """One prod deployment: its state folder, its settings and the environment that selects it."""

    home: Path
    settings: Settings
    env: dict[str, str]
    password: str


def deployment(home: Path, name: str, password: str) -> Deployment:
    env = {
        "SHOPRANK_PROFILE": "prod",
        "SHOPRANK_PG_DATABASE": name,
        "SHOPRANK_FEAST_PROJECT": name,
        "SHOPRANK_PG_PASSWORD": password,
    }
    settings = Settings(
        home=home, scale="tiny", profile="prod", pg_database=name, feast_project=name, pg_password=password
    )
    return Deployment(home, settings, env, password)


def make(dep: Deployment, *targets: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`make <targets>` for the deployment at SCALE=tiny; the caller checks the outcome."""
    env = dict(os.environ) | {"SHOPRANK_HOME": str(dep.home), "SCALE": "tiny"} | dep.env | (extra_env or {})
    env.pop("SHOPRANK_SCALE", None)
    return subprocess.run(
        ["make", "--no-print-directory", *targets], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def make_ok(dep: Deployment, *targets: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = make(dep, *targets, extra_env=extra_env)
    if proc.returncode != 0:
        raise AssertionError(
            f"make {' '.join(targets)} failed ({proc.returncode})\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def require_servers(settings: Settings) -> None:
    try:
        check_redis(settings)
        ensure_postgres(settings)
    except BackendUnavailableError as exc:
        pytest.fail(f"{exc}\n{SERVERS_HELP}", pytrace=False)


# One deployment name and password per session, known before the fixtures run: the prod platform is built in the
# background from the end of collection (tests/conftest.py, Prebuild).
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
PG_PASSWORD = os.environ.get("SHOPRANK_PG_PASSWORD") or f"canary-{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def pg_password() -> str:
    return PG_PASSWORD


def start_prod_platform(config: pytest.Config) -> Prebuild:
    """simulate -> dbt -> feast apply -> materialize (Redis) -> train -> promote (PostgreSQL), SCALE=tiny."""
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    dep = deployment(factory.mktemp("shoprank-prod"), f"shoprank_test_{RUN_ID}", PG_PASSWORD)

    def build() -> tuple[Deployment, str]:
        proc = make_ok(dep, *PIPELINE_TARGETS)
        return dep, proc.stdout + proc.stderr

    return Prebuild("prod_platform", build, cleanup=lambda: teardown(dep))


STARTERS["prod_platform"] = start_prod_platform


@pytest.fixture(scope="session")
def prod_platform(request: pytest.FixtureRequest) -> Iterator[tuple[Deployment, str]]:
    """The prod-profile platform; yields the deployment and the pipeline's combined output (to check it for
    secrets). Missing servers fail it with how to start them."""
    build = prebuild(request.config, "prod_platform")
    build.claimed = True  # this fixture cleans up from here on
    factory: pytest.TempPathFactory = request.config._tmp_path_factory  # type: ignore[attr-defined]
    require_servers(deployment(factory.getbasetemp(), f"shoprank_test_{RUN_ID}", PG_PASSWORD).settings)
    dep, output = build.wait()
    try:
        yield dep, output
    finally:
        teardown(dep)


def teardown(dep: Deployment) -> None:
    try:
        drop_redis_project(dep.settings)
    except BackendUnavailableError:
        pass
    except Exception:  # Redis down at teardown (a failed fault test): the database still goes
        pass
    drop_postgres(dep.settings)
