"""Experiments end to end against `bentoml serve`, one service start for all cases, no restart in between.

On a private copy of the tiny platform (the session's home is shared), with a second version registered from
the champion's files and a third whose files do not exist: no experiment -> answers name none; an A/B
experiment -> both arms, each user in the arm its hash says, every answer named and logged in full; stop ->
answers name none again; interleaving -> one answer credits both arms; an arm on the broken version -> served
by the champion, flagged in the answer and the log.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import mlflow
import pandas as pd
import pytest

from platform_common.registry import CHAMPION, connect, version_by_alias
from platform_common.settings import Settings
from serving.experiments import store
from serving.experiments.assignment import Assigner
from serving.experiments.model import build
from serving.launcher import holds_in_a_row, running_service

TIMEOUT = 8.0
ENV = {
    "SHOPRANK_RELOAD_SECONDS": "1",
    "SHOPRANK_LOAD_RETRY_SECONDS": "1",
    "SHOPRANK_REQUEST_LOG_RATE": "0",
    "SHOPRANK_REQUEST_LOG_FLUSH_SECONDS": "1",  # the exposure log's write interval too
}
USERS = [f"u{i:07d}" for i in range(120)]


def _copy_platform(src: Settings, home: Path) -> Settings:
    """Feast, MLflow and the marts of `src` under `home`, MLflow's absolute paths rewritten (as test_faults.py)."""
    for part in ("feast", "mlflow", "marts"):
        shutil.copytree(src.home_dir / part, home / part, ignore=shutil.ignore_patterns("*.lock"))
    old, new = str(src.home_dir), str(home)
    with sqlite3.connect(home / "mlflow" / "mlflow.db") as con:
        for (table,) in con.execute("select name from sqlite_master where type = 'table'").fetchall():
            for _, column, kind, *_ in con.execute(f'pragma table_info("{table}")').fetchall():
                if kind.upper().startswith(("TEXT", "VARCHAR")):
                    con.execute(
                        f'update "{table}" set "{column}" = replace("{column}", ?, ?) where "{column}" like ?',
                        [old, new, f"%{old}%"],
                    )
    return Settings(home=home, scale="tiny")


@pytest.fixture(scope="module")
def platform(tiny_platform, tmp_path_factory) -> tuple[Settings, dict[str, str]]:
    """The copy, with v(champion), a second version of the same files and a version whose files are missing."""
    settings = _copy_platform(tiny_platform, tmp_path_factory.mktemp("experiments-home"))
    client = connect(settings)
    name = settings.model_name
    champion = version_by_alias(client, name, CHAMPION)
    second = mlflow.register_model(f"runs:/{champion.run_id}/ranker", name)
    broken = client.create_model_version(name, source=str(settings.home_dir / "no-such-model"), run_id=None)
    versions = {"champion": str(champion.version), "second": str(second.version), "broken": str(broken.version)}
    return settings, versions


@pytest.fixture(scope="module")
def body(tiny_platform) -> dict:
    with duckdb.connect() as con:
        products = con.execute(
            "select distinct product_id from read_parquet(?) order by 1 limit 20",
            [str(tiny_platform.marts_dir / "product_features.parquet")],
        ).fetchall()
    return {"user_id": USERS[0], "product_ids": [p for (p,) in products]}


@pytest.fixture(scope="module")
def url(platform) -> Iterator[str]:
    settings, _ = platform
    with running_service(settings, extra_env=ENV) as base_url:
        yield base_url


def _rank(url: str, body: dict, user: str | None = None) -> dict:
    r = httpx.post(f"{url}/rank", json=body | ({"user_id": user} if user else {}), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """16 times in a row: every BentoML worker follows the registry on its own clock."""
    if not holds_in_a_row(check, timeout, in_a_row=16, pause=0.3):
        raise AssertionError(f"timed out waiting for: {what}")


def _start(settings: Settings, id: str, arms: str, design: str = "ab"):
    return store.start(settings, build(id, design, arms, f"salt-{id}", datetime.now(UTC), None))


def _exposures(settings: Settings, experiment_id: str, request_ids: set[str], timeout: float = 30.0) -> pd.DataFrame:
    """The experiment's exposure rows once every one of `request_ids` has been written (flushed every second)."""
    folder = settings.logs_dir / "experiments" / experiment_id
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(folder.glob("dt=*/*.parquet"))
        rows = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame({"request_id": []})
        if request_ids <= set(rows["request_id"]) or time.monotonic() > deadline:
            return rows


def test_without_an_experiment_answers_name_none(url, body):
    answer = _rank(url, body)
    assert answer["experiment"] is None and answer["request_id"] is None


def test_ab_both_arms_by_the_hash_logged_in_full_and_stopped_without_a_restart(url, platform, body):
    settings, versions = platform
    experiment = _start(settings, "ab1", f"control=champion:0.5,treatment=v{versions['second']}:0.5")
    _wait(lambda: (_rank(url, body)["experiment"] or {}).get("id") == "ab1", "answers name ab1")
    assigner = Assigner(experiment.salt, ["control", "treatment"], [0.5, 0.5])
    want_version = {"control": versions["champion"], "treatment": versions["second"]}
    answers = {user: _rank(url, body, user) for user in USERS}
    for user, answer in answers.items():
        info = answer["experiment"]
        assert info["id"] == "ab1" and info["design"] == "ab" and info["fallback"] is None
        assert info["arm"] == assigner.arm(user), user  # the same hash in every worker
        assert info["versions"] == {info["arm"]: want_version[info["arm"]]}
        assert answer["model"]["version"] == want_version[info["arm"]] and answer["request_id"]
    arms = [a["experiment"]["arm"] for a in answers.values()]
    assert 0.3 < arms.count("treatment") / len(arms) < 0.7
    assert all(_rank(url, body, user)["experiment"]["arm"] == a["experiment"]["arm"] for user, a in answers.items())

    # Every answer is in the exposure log, every slot of it, as served.
    ids = {a["request_id"] for a in answers.values()}
    rows = _exposures(settings, "ab1", ids)
    assert ids <= set(rows["request_id"])
    for user, answer in list(answers.items())[:10]:
        mine = rows[rows["request_id"] == answer["request_id"]].sort_values("position")
        assert list(mine["product_id"]) == [p["product_id"] for p in answer["ranking"]]
        assert set(mine["user_id"]) == {user} and set(mine["arm"]) == {answer["experiment"]["arm"]}
        assert set(mine["credit_arm"]) == {answer["experiment"]["arm"]}
        assert set(mine["model_version"]) == {answer["model"]["version"]}
        assert list(mine["expected_gmv"]) == pytest.approx([p["expected_gmv"] for p in answer["ranking"]])
        assert list(mine["pctr"]) == pytest.approx([p["pctr"] for p in answer["ranking"]])

    store.stop(settings, "ab1")
    _wait(lambda: _rank(url, body)["experiment"] is None, "answers name no experiment after the stop")


def test_interleaving_credits_both_arms(url, platform, body):
    settings, versions = platform
    _start(settings, "tdi1", f"control=champion,treatment={versions['second']}", design="interleaving")
    _wait(lambda: (_rank(url, body)["experiment"] or {}).get("id") == "tdi1", "answers name tdi1")
    answers = [_rank(url, body, user) for user in USERS[:40]]
    firsts = set()
    for answer in answers:
        info = answer["experiment"]
        assert info["design"] == "interleaving" and info["arm"] == "interleaved"
        assert info["versions"] == {"control": versions["champion"], "treatment": versions["second"]}
        products = [p["product_id"] for p in answer["ranking"]]
        assert sorted(products) == sorted(body["product_ids"])  # no duplicates, nothing lost
        assert len(info["credit"]) == len(products) and set(info["credit"]) == {"control", "treatment"}
        assert abs(info["credit"].count("control") - info["credit"].count("treatment")) <= 1
        assert [p["rank"] for p in answer["ranking"]] == list(range(1, len(products) + 1))
        firsts.add(info["credit"][0])
    assert firsts == {"control", "treatment"}  # the coin decides who picks first
    rows = _exposures(settings, "tdi1", {a["request_id"] for a in answers})
    one = rows[rows["request_id"] == answers[0]["request_id"]].sort_values("position")
    assert list(one["credit_arm"]) == answers[0]["experiment"]["credit"]
    assert set(one["arm"]) == {"interleaved"}
    store.stop(settings, "tdi1")
    _wait(lambda: _rank(url, body)["experiment"] is None, "answers name no experiment after the stop")


def test_an_arm_that_cannot_be_loaded_is_served_by_the_champion_and_flagged(url, platform, body):
    settings, versions = platform
    experiment = _start(settings, "broken1", f"control=champion:0.5,broken=v{versions['broken']}:0.5")
    _wait(lambda: (_rank(url, body)["experiment"] or {}).get("id") == "broken1", "answers name broken1")
    assigner = Assigner(experiment.salt, ["control", "broken"], [0.5, 0.5])
    user = next(u for u in USERS if assigner.arm(u) == "broken")
    answer = _rank(url, body, user)
    info = answer["experiment"]
    assert info["arm"] == "broken" and info["versions"] == {"broken": versions["champion"]}
    assert f"v{versions['broken']} could not be loaded" in info["fallback"]
    assert answer["model"]["version"] == versions["champion"]
    control = _rank(url, body, next(u for u in USERS if assigner.arm(u) == "control"))
    assert control["experiment"]["fallback"] is None
    ready = httpx.get(f"{url}/readyz", timeout=TIMEOUT).json()
    assert ready["experiment"]["arms"]["broken"]["fallback"] and ready["experiment"]["id"] == "broken1"
    rows = _exposures(settings, "broken1", {answer["request_id"]})
    mine = rows[rows["request_id"] == answer["request_id"]]
    assert set(mine["arm_target"]) == {versions["broken"]} and set(mine["model_version"]) == {versions["champion"]}
    assert all("could not be loaded" in f for f in mine["fallback"])
    store.stop(settings, "broken1")
    _wait(lambda: _rank(url, body)["experiment"] is None, "answers name no experiment after the stop")
