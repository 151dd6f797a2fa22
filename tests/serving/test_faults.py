"""Faults: the service answers 503 with the reason (or serves its documented fallback, flagged), never hangs,
and heals by itself once the fault clears.

One service on a private copy of the tiny platform. It starts with the model files, the Feast registry and the
online store all missing, and the faults are cleared one at a time (then the store is locked, then unlocked):
each answer names the fault in front. Once it is ready, the store goes missing, locked and corrupt, and the
registry missing, while it serves: it keeps answering from its last good snapshot with `degraded` set, and the
flag clears when the store is back.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import httpx
import pytest

from platform_common.settings import Settings
from serving.launcher import holds_in_a_row, running_service

TIMEOUT = 8.0  # per request; the service must never take longer than this
ENV = {
    "SHOPRANK_LOAD_RETRY_SECONDS": "1",
    "SHOPRANK_SNAPSHOT_POLL_SECONDS": "1",
    "SHOPRANK_RELOAD_SECONDS": "2",
    "SHOPRANK_REQUEST_LOG_RATE": "0",
}


def _copy_platform(src: Settings, home: Path) -> Settings:
    """Feast, MLflow and the marts of `src` under `home`, MLflow's absolute artifact paths rewritten."""
    for part in ("feast", "mlflow", "marts"):
        shutil.copytree(src.home_dir / part, home / part, ignore=shutil.ignore_patterns("*.lock"))
    old, new = str(src.home_dir), str(home)
    with sqlite3.connect(home / "mlflow" / "mlflow.db") as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in con.execute(f'pragma table_info("{table}")').fetchall():
                if kind.upper() in ("TEXT", "VARCHAR") or kind.upper().startswith("VARCHAR"):
                    con.execute(
                        f'update "{table}" set "{column}" = replace("{column}", ?, ?) where "{column}" like ?',
                        [old, new, f"%{old}%"],
                    )
    return Settings(home=home, scale="tiny")


@pytest.fixture(scope="module")
def platform(tiny_platform, tmp_path_factory) -> Settings:
    return _copy_platform(tiny_platform, tmp_path_factory.mktemp("faults-home"))


@pytest.fixture(scope="module")
def body(tiny_platform) -> dict:
    with duckdb.connect() as con:
        products = con.execute(
            "select distinct product_id from read_parquet(?) order by 1 limit 20",
            [str(tiny_platform.marts_dir / "product_features.parquet")],
        ).fetchall()
    return {"user_id": "u0000001", "product_ids": [p for (p,) in products]}


def _rank(url: str, body: dict) -> tuple[int, dict]:
    started = time.monotonic()
    r = httpx.post(f"{url}/rank", json=body, timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT, "the service hung"
    return r.status_code, r.json()


def _wait(check: Callable[[], bool], what: str, timeout: float = 40.0, in_a_row: int = 16) -> None:
    """Wait until `check` holds `in_a_row` times in a row: each BentoML worker heals on its own retry clock."""
    if not holds_in_a_row(check, timeout, in_a_row, pause=0.3):
        raise AssertionError(f"timed out waiting for: {what} ({in_a_row} times in a row)")


class _Away:
    """A file or folder moved aside; `restore` (idempotent) puts it back over whatever appeared in its place."""

    def __init__(self, path: Path) -> None:
        self.path, self.away = path, path.with_name(path.name + ".away")
        path.rename(self.away)

    def restore(self) -> None:
        if not self.away.exists():
            return
        if self.path.is_dir():
            shutil.rmtree(self.path)
        elif self.path.exists():
            self.path.unlink()
        self.away.rename(self.path)


@contextmanager
def _moved(path: Path) -> Iterator[_Away]:
    away = _Away(path)
    try:
        yield away
    finally:
        away.restore()


@contextmanager
def _locked(db: Path) -> Iterator[None]:
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


@contextmanager
def _corrupt(db: Path) -> Iterator[None]:
    with _moved(db):
        db.write_bytes(b"\x00garbage, not a database\x00" * 4096)
        yield


def _error(url: str, body: dict) -> str:
    status, answer = _rank(url, body)
    return answer.get("error", "") if status == 503 else ""


@pytest.fixture(scope="module")
def faulty(platform) -> Iterator[tuple[str, dict[str, _Away]]]:
    """A service started with its model files, the Feast registry and the online store all missing."""
    feast = platform.feast_dir
    with (
        _moved(feast / "online_store.db") as store,
        _moved(feast / "registry.db") as registry,
        _moved(platform.mlflow_dir / "artifacts") as artifacts,
        running_service(platform, extra_env=ENV, wait_for="/healthz") as url,
    ):
        yield url, {"store": store, "registry": registry, "artifacts": artifacts}


def test_start_up_faults_answer_503_with_the_reason_and_heal(faulty, platform, body):
    url, away = faulty
    store = platform.feast_dir / "online_store.db"
    status, answer = _rank(url, body)
    assert status == 503 and "not loaded" in answer["error"], answer
    ready = httpx.get(f"{url}/readyz", timeout=TIMEOUT)
    assert ready.status_code == 503 and ready.json()["reason"]
    model_error = answer["error"]
    away["artifacts"].restore()  # model files back: the Feast registry is the next fault named
    _wait(lambda: "registry" in _error(url, body), "the Feast registry named as the fault")
    assert _error(url, body) != model_error
    away["registry"].restore()
    _wait(lambda: "missing" in _error(url, body) and str(store) in _error(url, body), "the store named")
    away["store"].restore()
    with _locked(store):
        _wait(lambda: "locked" in _error(url, body), "the locked store named")
    _wait(lambda: _rank(url, body)[0] == 200, "ready once every fault cleared")
    _wait(lambda: httpx.get(f"{url}/readyz", timeout=TIMEOUT).status_code == 200, "/readyz 200")


@pytest.fixture(scope="module")
def ready_service(faulty, body) -> str:
    """The same service, healed by the test above (or healing now, if that test was deselected)."""
    url, away = faulty
    for fault in away.values():
        fault.restore()
    _wait(lambda: _rank(url, body)[0] == 200, "the service ready")
    return url


def _degraded(url: str, body: dict) -> str | None:
    status, answer = _rank(url, body)
    assert status == 200, answer  # the documented fallback: the last good snapshot, flagged
    assert len(answer["ranking"]) == len(body["product_ids"])
    return answer["degraded"]


def _store_up(url: str) -> str:
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    return next((line.split()[-1] for line in text.splitlines() if line.startswith("shoprank_feature_store_up")), "")


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("store missing", "missing"),
        ("store locked", "locked"),
        ("store corrupt", "corrupt"),
        ("registry missing", "registry"),
    ],  # noqa: E501
)
def test_runtime_store_faults_serve_the_last_snapshot_flagged_and_heal(ready_service, platform, body, fault, needle):
    url = ready_service
    assert _degraded(url, body) is None
    store, registry = platform.feast_dir / "online_store.db", platform.feast_dir / "registry.db"
    breaker = {
        "store missing": lambda: _moved(store),
        "store locked": lambda: _locked(store),
        "store corrupt": lambda: _corrupt(store),
        "registry missing": lambda: _moved(registry),
    }[fault]
    with breaker():
        _wait(lambda: needle in (_degraded(url, body) or ""), f"{fault} reported in the answer")
        _wait(lambda: _store_up(url) == "0.0", "shoprank_feature_store_up 0")
    _wait(lambda: _degraded(url, body) is None, f"recovery from {fault}")
    _wait(lambda: _store_up(url) == "1.0", "shoprank_feature_store_up 1")


def test_model_files_missing_at_runtime_do_not_matter_to_the_loaded_model(ready_service, platform, body):
    with _moved(platform.mlflow_dir / "artifacts"):
        assert _rank(ready_service, body)[0] == 200
