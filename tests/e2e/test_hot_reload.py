"""Serving follows the registry: promotions and rollbacks reach a running service without a failed request."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest

from platform_common.registry import CHAMPION, connect, version_by_alias
from platform_common.settings import Settings
from serving.launcher import holds_in_a_row, running_service
from tests.training.test_promotion import clone_champion
from training.promotion import promote, rollback

RELOAD_SECONDS = 2
SWITCH_DEADLINE = 45  # reload interval + loading a bundle on a busy 2-core box


@pytest.fixture(scope="module")
def live(tiny_platform, tmp_path_factory):
    home = tmp_path_factory.mktemp("reload-home")
    shutil.copytree(tiny_platform.home_dir, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("logs"))
    settings = Settings(home=home, scale="tiny")
    env = {"SHOPRANK_RELOAD_SECONDS": str(RELOAD_SECONDS), "SHOPRANK_SHADOW": "1"}
    with running_service(settings, extra_env=env) as url:
        yield settings, url


class Traffic:
    """A client sending /rank continuously, recording every answer's status and model version."""

    def __init__(self, url: str, body: dict) -> None:
        self.url, self.body = url, body
        self.answers: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(f"{self.url}/rank", json=self.body)
                    version = r.json()["model"]["version"] if r.status_code == 200 else None
                    self.answers.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError:
                    self.answers.append((time.monotonic(), 0, None))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def wait_for_version(self, version: str, since: float) -> float:
        deadline = since + SWITCH_DEADLINE
        while time.monotonic() < deadline:
            if any(t >= since and v == version for t, _, v in self.answers[-5:]):
                return time.monotonic() - since
            time.sleep(0.2)
        raise AssertionError(f"answers did not switch to v{version} within {SWITCH_DEADLINE}s")


def every_worker(url: str, holds, what: str, in_a_row: int = 16) -> None:
    """Each BentoML worker follows the registry on its own: wait until `holds(/readyz answer)` for `in_a_row`
    answers in a row on fresh connections (spread over the workers by the kernel)."""

    def check() -> bool:
        return holds(httpx.get(f"{url}/readyz").json())

    assert holds_in_a_row(check, SWITCH_DEADLINE, in_a_row), f"not every worker {what} within {SWITCH_DEADLINE}s"


def every_worker_shadows(url: str, version: str) -> None:
    every_worker(url, lambda ready: (ready.get("shadow") or {}).get("version") == version, f"shadows v{version}")


def served_version(url: str) -> str:
    return httpx.get(f"{url}/readyz").json()["model"]["version"]


def test_promotion_and_rollback_reach_the_service_with_zero_failed_requests(live):
    settings, url = live
    client = connect(settings)
    first = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    assert served_version(url) == first
    body = {"user_id": "u0000001", "product_ids": ["p000001", "p000002", "p000003"]}
    with Traffic(url, body) as traffic:
        time.sleep(1)
        second = clone_champion(settings, client)
        t0 = time.monotonic()
        assert promote(settings, force=True).promoted
        traffic.wait_for_version(second, t0)
        t1 = time.monotonic()
        rollback(settings)
        traffic.wait_for_version(first, t1)
        time.sleep(1)
    codes = [c for _, c, _ in traffic.answers]
    assert len(codes) > 20
    assert set(codes) == {200}, f"failed requests during the swap: {[c for c in codes if c != 200][:5]}"
    # once switched, no answer goes back to the replaced version until the rollback
    versions = [v for _, _, v in traffic.answers]
    after_promote = versions.index(second)
    after_rollback = len(versions) - versions[::-1].index(second)
    assert set(versions[after_promote:after_rollback]) == {second}
    assert set(versions[after_rollback:]) == {first}
    # the client above kept one connection, so one worker; the others roll back on their own clock
    every_worker(url, lambda ready: ready["model"]["version"] == first, f"serves v{first} again")


def test_shadow_mode_scores_the_challenger_without_returning_it(live):
    settings, url = live
    client = connect(settings)
    champion = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    challenger = clone_champion(settings, client)
    assert not promote(settings).promoted  # refused: it stays `challenger`
    every_worker_shadows(url, challenger)
    shadow_log = settings.logs_dir / "shadow_scores.jsonl"
    before = len(shadow_log.read_text().splitlines()) if shadow_log.exists() else 0
    r = httpx.post(f"{url}/rank", json={"user_id": "u0000002", "product_ids": ["p000004", "p000005"]})
    assert r.status_code == 200 and r.json()["model"]["version"] == champion
    assert "challenger" not in r.text
    lines = shadow_log.read_text().splitlines()
    assert len(lines) == before + 1, "the request's shadow scores were not logged"
    record = json.loads(lines[-1])
    assert (record["champion"], record["challenger"]) == (champion, challenger)
    assert {s["product_id"] for s in record["scores"]} == {"p000004", "p000005"}
