"""Start `bentoml serve` as a child process, wait until it is ready, stop it: for `make demo` and the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from platform_common.settings import REPO_ROOT, Settings, export_env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def holds_in_a_row(check: Callable[[], bool], timeout: float, in_a_row: int = 16, pause: float = 0.5) -> bool:
    """Whether `check()` holds `in_a_row` times in a row within `timeout` seconds (pausing `pause` after a miss).
    Every BentoML worker loads the champion, follows the registry and heals on its own clock. The workers share one
    listening socket and each fresh connection is taken by whichever worker accepts first: one success says one
    worker got there, sixteen in a row that the others very likely did too."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if check() else 0
        if streak >= in_a_row:
            return True
        if not streak:
            time.sleep(pause)
    return False


def wait_ready(
    base_url: str, proc: subprocess.Popen, timeout: float, log_path: Path, path: str, in_a_row: int = 16
) -> None:
    """Until `path` answers 200 `in_a_row` times in a row (every worker answers 503 until it has the champion)."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {proc.returncode}; log: {log_path}")
        try:
            return httpx.get(f"{base_url}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if not holds_in_a_row(ready, timeout, in_a_row):
        raise TimeoutError(f"{path} not 200 {in_a_row} times in a row after {timeout:.0f}s; log: {log_path}")


@contextmanager
def running_service(
    settings: Settings,
    port: int | None = None,
    timeout: float = 120,
    extra_env: dict[str, str] | None = None,
    wait_for: str = "/readyz",
    cpus: Collection[int] | None = None,
) -> Iterator[str]:
    """Yield the base URL once `wait_for` answers 200; always stops the service, even if the caller fails.

    `cpus`: the cores the service and its workers may run on (sched_setaffinity before exec, inherited by every
    worker and thread), so a benchmark can keep its load generator off them as another machine would."""
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
        pin = (lambda: os.sched_setaffinity(0, set(cpus))) if cpus else None
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin,  # noqa: PLW1509 - only sched_setaffinity, async-signal-safe enough; no threads yet
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


@contextmanager
def running_stream_processor(settings: Settings, seconds: float) -> Iterator[Path]:
    """`make stream` as a child process for `seconds` at most (stopped on exit with SIGTERM, so it writes its last
    checkpoint and metrics); yields its log file. For experiments whose arms read the stream views."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"stream-{os.getpid()}.log"
    cmd = [sys.executable, "-m", "transforms.streaming", "run", "--seconds", f"{seconds:.0f}"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=export_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        time.sleep(1.0)
        if proc.poll() is not None:
            raise RuntimeError(f"the stream processor exited with {proc.returncode}; log: {log_path}")
        yield log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
