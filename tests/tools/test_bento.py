"""`bentoml build` in the repo root (bentofile.yaml), then `bentoml serve` of that Bento on the platform state."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from platform_common.settings import REPO_ROOT, export_env
from serving.launcher import free_port
from tests.tools.processes import server, venv_tool

# What `make bento` runs before `bentoml build`: the locked dependencies, without the project itself (the Bento
# carries its source).
EXPORT = ["export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-o"]


def run(cmd: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def bento(tiny_platform, tmp_path_factory) -> tuple[str, dict[str, str], Path]:
    """(tag, environment with a private BENTOML_HOME, the Bento's folder)."""
    env = export_env(tiny_platform) | {"BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml-home"))}
    requirements = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())["python"]["requirements_txt"]
    run([venv_tool("uv"), *EXPORT, requirements], env)
    out = run([venv_tool("bentoml"), "build", "--output", "tag"], env)
    tags = [line.removeprefix("__tag__:") for line in out.splitlines() if line.startswith("__tag__:")]
    assert len(tags) == 1, out
    # rich wraps the printed path at the terminal width (80 columns without a terminal): never a line break in it
    path = Path("".join(run([venv_tool("bentoml"), "get", tags[0], "-o", "path"], env | {"COLUMNS": "4000"}).split()))
    return tags[0], env, path


def locked_versions() -> dict[str, str]:
    """name -> version of every package uv.lock resolves for the project (dev tools included)."""
    import tomllib

    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_the_bento_holds_the_service_code_and_the_locked_dependencies_only(bento):
    tag, _, path = bento
    assert tag.startswith("shoprank:")
    src = path / "src"
    for module in ("serving/service.py", "training/bundle.py", "platform_common/feast_config.py"):
        assert (src / module).is_file(), module
    assert (src / "feature_repo" / "feature_store.yaml").is_file()
    shipped = {p.relative_to(src).parts[0] for p in src.rglob("*") if p.is_file()}
    assert not shipped & {".state", ".venv", "tests", "docs", "benchmarks", "simulator", "transforms"}, shipped
    assert not list(src.rglob("__pycache__"))

    pinned: dict[str, str] = {}
    for line in (path / "env" / "python" / "requirements.txt").read_text().splitlines():
        line = line.split(";")[0].strip()
        if "==" in line and not line.startswith(("#", "-")):
            name, version = line.split("==")
            pinned[name.strip().lower()] = version.strip()
    locked = locked_versions()
    assert {"bentoml", "feast", "mlflow", "xgboost", "grpcio"} <= set(pinned)
    assert {name: v for name, v in pinned.items() if locked.get(name) != v} == {}
    assert "pytest" not in pinned  # dev dependencies stay out of the image


def test_bentoml_serve_of_the_bento_ranks_on_the_platform_state(bento, tiny_platform, tmp_path):
    tag, env, _ = bento
    with duckdb.connect() as con:
        user = con.execute(
            "select user_id from read_parquet(?) group by 1 order by count(*) desc, 1 limit 1",
            [str(tiny_platform.marts_dir / "impression_labels.parquet")],
        ).fetchone()[0]
        products = [
            r[0]
            for r in con.execute(
                "select distinct product_id from read_parquet(?) order by 1 limit 5",
                [str(tiny_platform.marts_dir / "product_features.parquet")],
            ).fetchall()
        ]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Started outside the source tree, so the service can only run from the code inside the Bento.
    cmd = [venv_tool("bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    log_path = tiny_platform.logs_dir / f"bento-{port}.log"
    with server(cmd, cwd=tmp_path, env=env, log_path=log_path, ready_url=f"{base}/readyz", timeout=180, in_a_row=8):
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        r = httpx.post(f"{base}/rank", json={"user_id": user, "product_ids": products}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["known_user"] is True
    assert sorted(p["product_id"] for p in body["ranking"]) == sorted(products)
    assert body["model"]["version"] == "1"
