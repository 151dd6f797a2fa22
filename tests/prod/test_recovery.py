"""Faults of the prod profile: Redis restarted in the middle of materialization, PostgreSQL away during promote.

The Redis restart happens on a private redis-server started for the test on a free port (same binary and
options as CI's: no persistence, so a restart loses everything), not on the shared server: parallel runs and
other deployments on this machine never see it.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import redis
import yaml

from platform_common.connections import redis_project_keys
from platform_common.settings import FEATURE_REPO_DIR, Settings
from serving.launcher import free_port
from tests.prod.conftest import Deployment, deployment, make, make_ok, teardown

pytestmark = [pytest.mark.prod, pytest.mark.e2e]


@dataclass
class PrivateRedis:
    """A redis-server of this test only: `--save "" --appendonly no`, like CI's, so a restart empties it."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def up(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def wait(self, up: bool, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.up() == up:
                return
            time.sleep(0.05)
        raise AssertionError(f"private Redis on {self.port} still {'down' if up else 'up'} after {timeout:.0f}s")

    def start(self) -> None:
        if self.up():
            return
        subprocess.run(
            [
                "redis-server",
                "--daemonize", "yes",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
                "--logfile", str(self.folder / "redis.log"),
                "--pidfile", str(self.folder / "redis.pid"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.wait(up=True)

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        self.wait(up=False)


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail(
            "the Redis restart test starts its own redis-server: install it (Debian: apt-get install -y redis-server)",
            pytrace=False,
        )
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_deployment(prod_platform, run_id, tmp_path, private_redis):
    """A second deployment on the same marts and PostgreSQL but the private Redis, applied, never materialized."""
    main, _ = prod_platform
    home = tmp_path / "home"
    home.mkdir()
    for source in main.home.iterdir():  # the marts (and any other exported sources), not the deployment's state
        if source.is_dir() and source.name not in ("feast", "mlflow", "logs", "datasets", "dbt"):
            (home / source.name).symlink_to(source)
    name = f"shoprank_test_{run_id}_f"
    dep = deployment(home, name, main.password)
    dep = Deployment(
        home,
        Settings(**(dep.settings.model_dump() | {"redis_url": private_redis.url})),
        dep.env | {"SHOPRANK_REDIS_URL": private_redis.url},
        dep.password,
    )
    try:
        make_ok(dep, "apply")
        yield dep
    finally:
        private_redis.start()
        teardown(dep)


def expected_online(dep: Deployment, fv, end: datetime) -> tuple[list[dict], dict[str, list]]:
    """Entity rows of every entity in the view's mart, and the values a complete online store holds for them:
    the latest row within [end - ttl, end], or nothing."""
    source = fv.batch_source
    reverse = {v: k for k, v in (source.field_mapping or {}).items()}
    keys = [c.name for c in fv.entity_columns]
    features = [f.name for f in fv.features]
    src = [reverse.get(c, c) for c in keys + features]
    start = end - fv.ttl
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        rows = con.execute(
            f"""
            with entities as (select distinct {", ".join(src[: len(keys)])} from read_parquet($p)),
            latest as (
                select * from read_parquet($p)
                where event_timestamp >= $start and event_timestamp <= $end
                qualify row_number() over (partition by {", ".join(src[: len(keys)])}
                                           order by event_timestamp desc, created_timestamp desc) = 1
            )
            select {", ".join(f"e.{c}" for c in src[: len(keys)])}, {", ".join(f"l.{c}" for c in src[len(keys) :])}
            from entities e left join latest l using ({", ".join(src[: len(keys)])})
            order by all
            """,
            {"p": source.path, "start": start, "end": end},
        ).fetchall()
    entity_rows = [dict(zip(keys, r[: len(keys)], strict=True)) for r in rows]
    values = {f: [r[len(keys) + i] for r in rows] for i, f in enumerate(features)}
    return entity_rows, values


def assert_store_complete(dep: Deployment, end: datetime) -> int:
    from platform_common.feast_config import get_feature_store

    store = get_feature_store(dep.settings)
    checked = 0
    for fv in store.list_feature_views():
        if not fv.online or fv.ttl is None or not fv.ttl.total_seconds():
            continue
        # as of the view's last materialization, not a later clock: a row stamped between the two (the next day's
        # campaign plan lands from 00:00 UTC) is not online yet, rightly (this failed a run just after midnight)
        ends = [e for _, e in fv.materialization_intervals]
        entity_rows, expected = expected_online(dep, fv, min(end, max(ends)) if ends else end)
        if not entity_rows:  # a stream view nothing was pushed to (its log holds only the empty part)
            continue
        got = store.get_online_features(
            features=[f"{fv.name}:{f}" for f in expected], entity_rows=entity_rows
        ).to_dict()
        for feature, values in expected.items():
            bad = [
                (entity_rows[i], want, have)
                for i, (want, have) in enumerate(zip(values, got[feature], strict=True))
                if not (
                    want == have
                    or (isinstance(want, float) and isinstance(have, float) and math.isnan(want) and math.isnan(have))
                )
            ]
            assert not bad, f"{fv.name}.{feature}: {len(bad)} of {len(values)} differ, e.g. {bad[:3]}"
        checked += len(entity_rows)
    return checked


def test_redis_restart_mid_materialization_then_rerun_is_complete(fault_deployment, private_redis, monkeypatch):
    from feast import FeatureStore

    from platform_common.feast_config import render_feature_store_yaml

    dep = fault_deployment
    monkeypatch.delenv("PGPASSWORD", raising=False)
    # The interrupted run is the prod engine writing one row per round trip (chunk_rows: 1): at this scale it
    # would otherwise write everything in well under a second, leaving no moment to pull Redis away.
    rendered = render_feature_store_yaml(dep.settings)
    config = yaml.safe_load(rendered.read_text())
    config["batch_engine"]["chunk_rows"] = 1
    slow = rendered.with_name("feature_store.interrupted.yaml")
    slow.write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=slow)
    errors: list[BaseException] = []

    def materialize() -> None:
        try:
            store.materialize_incremental(end_date=datetime.now(UTC))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    worker = threading.Thread(target=materialize, daemon=True)
    worker.start()
    deadline = time.monotonic() + 180
    while not any(True for _ in redis_project_keys(dep.settings)):
        assert worker.is_alive(), f"materialization ended before writing anything: {errors}"
        assert time.monotonic() < deadline, "materialization wrote nothing to Redis within 180s"
        time.sleep(0.02)
    private_redis.stop()
    worker.join(timeout=120)
    assert not worker.is_alive(), "materialization hangs after Redis went away"
    assert errors, "materialization finished before Redis went away: nothing was interrupted"
    assert isinstance(errors[0], redis.ConnectionError | OSError), repr(errors[0])

    private_redis.start()
    assert not any(True for _ in redis_project_keys(dep.settings)), "a restarted Redis without persistence is empty"
    from platform_common.feast_config import get_feature_store

    recorded = [v.name for v in get_feature_store(dep.settings).list_feature_views() if v.materialization_intervals]
    rerun = make_ok(dep, "materialize")  # the prod default: the fast engine, which notices the store lost data
    if recorded:  # the registry says these views are done, but their rows went with the restart
        assert "reading from there" in rerun.stdout + rerun.stderr, rerun.stderr[-3000:]
    checked = assert_store_complete(dep, datetime.now(UTC))
    assert checked > 1000


def test_materialize_after_a_restart_refills_views_the_registry_calls_done(fault_deployment, private_redis):
    """The deterministic half of the story above: every view materialized, then Redis restarts empty. Feast's
    registry still records the intervals, so plain incremental materialization would only add the newest
    rows; the engine's watermark (gone with the data) makes the rerun read the whole TTL window again."""
    dep = fault_deployment
    make_ok(dep, "materialize")
    private_redis.stop()
    private_redis.start()
    assert not any(True for _ in redis_project_keys(dep.settings))
    rerun = make_ok(dep, "materialize")
    assert "reading from there" in rerun.stderr, rerun.stderr[-3000:]
    assert assert_store_complete(dep, datetime.now(UTC)) > 1000
    again = make_ok(dep, "materialize")  # watermarks are back: nothing is re-read
    assert "reading from there" not in again.stderr, again.stderr[-3000:]


def test_promote_without_postgres_fails_clearly_and_moves_no_alias(prod_platform, monkeypatch):
    from platform_common.registry import CHAMPION, connect, version_by_alias

    dep, _ = prod_platform
    monkeypatch.delenv("PGPASSWORD", raising=False)  # connect() hands the password to libpq in this process
    s = dep.settings
    client = connect(s)
    champion = version_by_alias(client, s.model_name, CHAMPION)
    assert champion is not None
    # A new candidate (the champion's model, same tags) and no champion: promote would make it champion.
    tags = {k: v for k, v in champion.tags.items() if not k.startswith("promotion_")}
    candidate = client.create_model_version(s.model_name, champion.source, run_id=champion.run_id, tags=tags)
    client.delete_registered_model_alias(s.model_name, CHAMPION)
    try:
        port = free_port()  # nothing listens there
        started = time.monotonic()
        proc = make(dep, "promote", extra_env={"SHOPRANK_PG_PORT": str(port)})
        elapsed = time.monotonic() - started
        output = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
        assert proc.returncode != 0, output[-3000:]
        assert f"PostgreSQL is unavailable at postgresql://{s.pg_user}@{s.pg_host}:{port}/{s.pg_database}" in output
        assert "start PostgreSQL" in output
        assert dep.password not in output
        assert elapsed < 90, f"promote took {elapsed:.0f}s to give up"

        assert version_by_alias(client, s.model_name, CHAMPION) is None, "an alias moved"
        tags_after = client.get_model_version(s.model_name, candidate.version).tags
        assert not any(k.startswith("promotion_") for k in tags_after), tags_after
    finally:
        client.set_registered_model_alias(s.model_name, CHAMPION, champion.version)
        client.delete_model_version(s.model_name, candidate.version)
