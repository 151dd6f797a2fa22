"""Start `bentoml serve` as a child process, wait until it is ready, stop it: for `make demo` and the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from platform_common.settings import REPO_ROOT, Settings, export_env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    base_url: str, proc: subprocess.Popen, timeout: float, log_path: Path, path: str, in_a_row: int = 16
) -> None:
    """Until `path` answers 200 `in_a_row` times in a row. Every BentoML worker loads the champion on its own and
    answers 503 until it has. The workers share one listening socket and each request here opens a fresh
    connection, taken by whichever worker accepts first: one 200 says one worker is ready, sixteen in a row that
    the others very likely are too."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {proc.returncode}; log: {log_path}")
        try:
            ok = httpx.get(f"{base_url}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
        streak = streak + 1 if ok else 0
        if streak >= in_a_row:
            return
        if not ok:
            time.sleep(0.5)
    raise TimeoutError(f"{path} not 200 {in_a_row} times in a row after {timeout:.0f}s; log: {log_path}")


@contextmanager
def running_service(
    settings: Settings,
    port: int | None = None,
    timeout: float = 120,
    extra_env: dict[str, str] | None = None,
    wait_for: str = "/readyz",
) -> Iterator[str]:
    """Yield the base URL once `wait_for` answers 200; always stops the service, even if the caller fails."""
    port = port or free_port()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"bentoml-{port}.log"
    env = export_env(settings) | (extra_env or {})
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:Ranker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        str(REPO_ROOT),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, proc, timeout, log_path, wait_for)
        yield base_url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
