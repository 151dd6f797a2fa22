"""Start a real CLI server (`feast ui`, `bentoml serve <bento>`) in its own process group, wait for it, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from serving.launcher import holds_in_a_row

VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """The console script installed beside this interpreter: the same CLI a user runs from `.venv/bin`."""
    path = VENV_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make install`")
    return str(path)


@contextmanager
def server(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    ready_url: str,
    timeout: float,
    in_a_row: int = 1,
) -> Iterator[subprocess.Popen]:
    """Yield the process once `ready_url` answers 200 `in_a_row` times in a row; always stop the whole group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            return httpx.get(ready_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        if not holds_in_a_row(ready, timeout, in_a_row):
            raise AssertionError(f"{ready_url} not 200 after {timeout:.0f}s:\n{log_path.read_text()[-4000:]}")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
