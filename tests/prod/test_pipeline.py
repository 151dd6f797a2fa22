"""The whole platform under SHOPRANK_PROFILE=prod at SCALE=tiny: Redis online store, Feast registry and MLflow in
PostgreSQL, the real `bentoml serve` reading features from Redis, following experiments stored in PostgreSQL."""

from __future__ import annotations

import contextlib
import json

import duckdb
import httpx
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from mlflow.exceptions import MlflowException

from platform_common.connections import pg_connect, redis_client, redis_project_keys
from platform_common.feast_config import get_feature_store
from serving.launcher import holds_in_a_row, running_service
from tests.prod.conftest import make_ok

pytestmark = [pytest.mark.prod, pytest.mark.e2e]


@pytest.fixture(scope="module")
def dep(prod_platform):
    return prod_platform[0]


@pytest.fixture(scope="module")
def service(dep):
    # a 1 s registry poll: the experiment test waits for the service to follow a start and a stop
    env = dep.env | {"SHOPRANK_RELOAD_SECONDS": "1", "SHOPRANK_REQUEST_LOG_FLUSH_SECONDS": "1"}
    with running_service(dep.settings, extra_env=env) as url:
        yield url


@pytest.fixture(scope="module")
def catalogue(dep):
    with duckdb.connect() as con:
        user = con.execute(
            "select user_id from read_parquet(?) group by 1 order by count(*) desc, 1 limit 1",
            [str(dep.settings.marts_dir / "impression_labels.parquet")],
        ).fetchone()[0]
        products = [
            r[0]
            for r in con.execute(
                "select distinct product_id from read_parquet(?) order by 1 limit 30",
                [str(dep.settings.marts_dir / "product_features.parquet")],
            ).fetchall()
        ]
    return user, products


def user_key(user_id: str, project: str) -> bytes:
    key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    return serialize_entity_key(key, entity_key_serialization_version=3) + project.encode()


def test_registries_live_in_postgres(dep):
    s = dep.settings
    conn = pg_connect(s)
    try:
        with conn.cursor() as cur:
            cur.execute("select feature_view_name from feast.feature_views where project_id = %s", (s.feast_project,))
            views = {r[0] for r in cur.fetchall()}
            cur.execute(
                "select a.version from mlflow.registered_model_aliases a where a.name = %s and a.alias = 'champion'",
                (s.model_name,),
            )
            champion = cur.fetchone()
            cur.execute("select count(*) from mlflow.model_versions where name = %s", (s.model_name,))
            versions = cur.fetchone()[0]
            cur.execute("select artifact_location from mlflow.experiments where name = %s", (s.experiment_name,))
            artifact_location = cur.fetchone()[0]
    finally:
        conn.close()
    assert {"user_features", "product_features", "user_category_features", "merchant_features"} <= views
    # Read back through Feast: the registry it opens is that database, and it recorded the materialization there.
    store = get_feature_store(s)
    assert {v.name for v in store.list_feature_views()} == views
    assert all(v.materialization_intervals for v in store.list_feature_views()), "a view was never materialized"
    assert champion is not None and versions >= 1
    # Artifacts stay on the configured path under SHOPRANK_HOME; nothing embedded is left behind.
    assert artifact_location == s.artifact_root.as_uri()
    assert any(s.artifact_root.rglob("MLmodel"))
    assert not (s.feast_dir / "registry.db").exists()
    assert not (s.feast_dir / "online_store.db").exists()
    assert not (s.mlflow_dir / "mlflow.db").exists()


def test_online_features_live_in_redis(dep, catalogue):
    s = dep.settings
    client = redis_client(s)
    try:
        fields = client.hkeys(user_key(catalogue[0], s.feast_project))
        keys = sum(1 for _ in redis_project_keys(s))
    finally:
        client.close()
    assert b"_ts:user_features" in fields, f"no user_features hash for {catalogue[0]} in Redis: {fields}"
    assert keys > 1000, f"only {keys} Redis keys for project {s.feast_project}"


def test_status_reports_the_prod_backends(dep):
    out = make_ok(dep, "status").stdout
    status = json.loads(out)
    assert status["profile"] == "prod"
    assert status["tracking_uri"].startswith(f"postgresql://{dep.settings.pg_user}@")
    assert dep.settings.pg_database in status["tracking_uri"]
    (model,) = status["models"]
    assert model["champion"]["version"]
    assert dep.password not in out


def test_rank_answers_with_features_read_from_redis(dep, service, catalogue):
    user, products = catalogue
    body = {"user_id": user, "product_ids": products, "surface": "search"}
    r = httpx.post(f"{service}/rank", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["known_user"] is True
    assert all(p["known_product"] for p in answer["ranking"])
    assert answer["model"]["version"]

    # The service reads Redis live: without the user's hash the same request no longer knows the user.
    key = user_key(user, dep.settings.feast_project)
    client = redis_client(dep.settings)
    try:
        dumped = client.dump(key)
        assert dumped is not None, "the busy user has no key in Redis"
        client.delete(key)
        try:
            r = httpx.post(f"{service}/rank", json=body, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["known_user"] is False
        finally:
            client.restore(key, 0, dumped, replace=True)
    finally:
        client.close()
    r = httpx.post(f"{service}/rank", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["known_user"] is True


def test_password_is_in_no_file_log_or_output(dep, prod_platform, service):
    """The canary PostgreSQL password reached the tools (trust auth ignores it) but nothing wrote it down."""
    _, pipeline_output = prod_platform
    secret = dep.password.encode()
    assert dep.password not in pipeline_output
    rendered = (dep.settings.feast_dir / "feature_store.yaml").read_text()
    assert "${SHOPRANK_PG_PASSWORD}" in rendered
    leaks = []
    for path in dep.home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000 and secret in path.read_bytes():
            leaks.append(str(path.relative_to(dep.home)))
    assert not leaks, f"the password was written to {leaks}"
    conn = pg_connect(dep.settings)
    try:
        with conn.cursor() as cur:
            for table, column in [("tags", "value"), ("params", "value"), ("model_version_tags", "value")]:
                cur.execute(f"select count(*) from mlflow.{table} where {column} like %s", (f"%{dep.password}%",))
                assert cur.fetchone()[0] == 0, f"the password is in mlflow.{table}"
    finally:
        conn.close()


EXPERIMENT = "prod-ab"


def test_experiments_and_promotion_on_online_evidence_under_prod(dep, service, catalogue):
    """Start an A/B on the PostgreSQL registry, the service names the arm, live shoppers answer, stop it, analyse it
    (experiment definition from PostgreSQL, the run in PostgreSQL-backed MLflow), promote on a summary.

    In process (the commands' own functions), to spare a Python start per step; the CLIs are tested locally.
    """
    import asyncio
    import time
    from datetime import UTC, datetime, timedelta

    from platform_common.registry import CHAMPION, connect, version_by_alias
    from serving.experiments import store
    from serving.experiments.model import build
    from serving.experiments.report import MLFLOW_EXPERIMENT, write_report
    from simulator.live.client import run_live
    from training import audit
    from training.promotion import PREVIOUS_CHAMPION, PromotionPolicy, promote

    s = dep.settings
    client = connect(s)
    champion = version_by_alias(client, s.model_name, CHAMPION)
    tags = {k: v for k, v in champion.tags.items() if not k.startswith("promotion_")}
    candidate = client.create_model_version(s.model_name, champion.source, run_id=champion.run_id, tags=tags)
    champ_v, cand_v = str(champion.version), str(candidate.version)
    user, products = catalogue
    body = {"user_id": user, "product_ids": products[:10]}

    def experiment() -> dict | None:
        r = httpx.post(f"{service}/rank", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["experiment"]

    try:
        arms = f"control=champion,treatment=v{cand_v}"
        store.start(s, build(EXPERIMENT, "ab", arms, None, datetime.now(UTC), None, created_by="prod-test"))
        conn = pg_connect(s)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "select value from mlflow.registered_model_tags where name = %s and key = %s",
                    (s.model_name, f"shoprank.experiment.{EXPERIMENT}"),
                )
                stored = cur.fetchone()
        finally:
            conn.close()
        assert stored is not None and json.loads(stored[0])["id"] == EXPERIMENT
        assert holds_in_a_row(lambda: (experiment() or {}).get("id") == EXPERIMENT, 60, in_a_row=8, pause=0.3)
        info = experiment()
        assert info is not None and info["arm"] in ("control", "treatment") and info["fallback"] is None
        assert info["versions"] == {info["arm"]: {"control": champ_v, "treatment": cand_v}[info["arm"]]}
        # live shoppers under the experiment (orders land within the run: checkout 720x faster)
        live = asyncio.run(
            run_live(s.raw_dir, s.oracle_dir, service, 40.0, 12.0, seed=5, linger_seconds=5, checkout_speedup=720.0)
        )
        assert live.experiment_answers > 300 and live.failed == 0, live
        store.stop(s, EXPERIMENT)
        assert holds_in_a_row(lambda: experiment() is None, 60, in_a_row=8, pause=0.3)
        time.sleep(3)  # the exposure log flushes every second

        # `make experiment-report`'s own function, under prod: the definition comes from PostgreSQL
        analysis, report, summary_path = write_report(s, EXPERIMENT, timedelta(minutes=2))
        written = json.loads(summary_path.read_text())
        assert report.is_file() and written["id"] == EXPERIMENT and written["design"] == "ab"
        arms = written["arms"]
        assert {a: arms[a]["model_version"] for a in arms} == {"control": champ_v, "treatment": cand_v}
        # every live answer under the experiment is an exposure (the probes above add a few of one user)
        assert sum(arms[a]["requests"] for a in arms) >= live.experiment_answers
        assert all(arms[a]["users"] > 50 for a in arms)
        assert 0.0 <= written["srm_p_value"] <= 1.0
        ctr = written["metrics"]["ctr"]
        assert ctr["ci_low"] <= ctr["lift"] <= ctr["ci_high"] and ctr["true_lift"] is not None
        runs = client.search_runs(
            [client.get_experiment_by_name(MLFLOW_EXPERIMENT).experiment_id],
            filter_string=f"tags.`shoprank.experiment` = '{EXPERIMENT}'",
        )
        assert len(runs) >= 1 and runs[0].data.metrics["control_requests"] == arms["control"]["requests"]

        # the gate on a hand-written analysis with a known verdict (the arms above are the same files: their real
        # lift is zero, which proves nothing about the gate), where `make experiment-report` writes it
        summary = {
            "id": EXPERIMENT,
            "design": "ab",
            "control": "control",
            "treatment": "treatment",
            "arms": {
                "control": {"model_version": champ_v, "requests": 900, "users": 60},
                "treatment": {"model_version": cand_v, "requests": 910, "users": 61},
            },
            "srm_p_value": 0.8,
            "metrics": {
                m: {"lift": 0.03, "ci_low": 0.01, "ci_high": 0.05, "p_value": 0.004, "true_lift": 0.025}
                for m in ("gmv_per_request", "ctr", "cvr")
            },
            "guardrails": [{"name": "error_rate", "passed": True}],
            "readable": True,
        }
        (s.experiments_dir / EXPERIMENT).mkdir(parents=True, exist_ok=True)
        (s.experiments_dir / EXPERIMENT / "summary.json").write_text(json.dumps(summary))
        # the candidate equals the champion offline (the same files): a lenient AUC threshold, the online part decides
        decision = promote(s, PromotionPolicy(min_auc_gain=-0.001), version=cand_v, experiment=EXPERIMENT)
        assert decision.promoted, decision.reason
        assert "online in experiment prod-ab (superior): GMV/request lift +3.00% [+1.00%, +5.00%]" in decision.reason
        assert str(version_by_alias(client, s.model_name, CHAMPION).version) == cand_v
        assert client.get_model_version(s.model_name, cand_v).tags["promotion_experiment"] == EXPERIMENT
        kinds = [(e.kind, e.experiment) for e in audit.history(client, s, s.model_name)[-3:]]
        assert kinds == [("experiment_start", EXPERIMENT), ("experiment_stop", EXPERIMENT), ("promote", EXPERIMENT)]
    finally:
        client.set_registered_model_alias(s.model_name, CHAMPION, champ_v)
        with contextlib.suppress(MlflowException):  # set only if the promotion went through
            client.delete_registered_model_alias(s.model_name, PREVIOUS_CHAMPION)
        client.delete_model_version(s.model_name, cand_v)
