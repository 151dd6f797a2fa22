"""`feast ui` on the platform's own registry, the way a user starts it (see the README's "Using the real tools")."""

from __future__ import annotations

import subprocess
import sys

import httpx

from platform_common.feast_config import get_feature_store
from platform_common.settings import FEATURE_REPO_DIR, REPO_ROOT, export_env
from serving.launcher import free_port
from tests.tools.processes import server, venv_tool


def test_feast_ui_serves_the_projects_and_feature_views_of_the_registry(tiny_platform):
    env = export_env(tiny_platform)
    # The same call the Makefile makes to point the feast CLI at the state folder's rendered config.
    yaml_path = subprocess.run(
        [sys.executable, "-m", "platform_common.feast_config"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env["FEAST_FS_YAML_FILE_PATH"] = yaml_path
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [venv_tool("feast"), "ui", "--host", "127.0.0.1", "--port", str(port)]
    log_path = tiny_platform.logs_dir / f"feast-ui-{port}.log"

    with server(
        cmd, cwd=FEATURE_REPO_DIR, env=env, log_path=log_path, ready_url=f"{base}/projects-list.json", timeout=90
    ):
        projects = httpx.get(f"{base}/projects-list.json", timeout=10).json()["projects"]
        # Feast falls back to a placeholder "Test project" when it cannot read the registry: require the real one.
        assert [p["id"] for p in projects] == [tiny_platform.feast_project], projects
        assert projects[0]["description"] != "Test project"
        r = httpx.get(f"{base}/api/v1/feature_views", params={"project": tiny_platform.feast_project}, timeout=30)
        assert r.status_code == 200, r.text
        served = {fv["spec"]["name"] for fv in r.json()["featureViews"]}

    store = get_feature_store(tiny_platform)
    expected = {fv.name for fv in store.list_feature_views()}
    assert expected >= {"user_features", "product_features"}
    assert served == expected
