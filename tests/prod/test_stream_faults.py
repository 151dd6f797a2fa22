"""The stream under faults on the prod transport (issue 17, section 5): Redis killed and restarted mid-stream, the
processor killed mid-batch and restarted, malformed events on the Redis Stream.

Each test starts its own redis-server on a free port (never the shared one: it is killed with SIGKILL), holding
both the event stream and Feast's online store, with the persistence a real deployment runs: the append-only file
(`appendonly yes`, `appendfsync everysec`) in the test's folder. Redis writes each command to the file before it
answers it, so a killed (not a crashed-machine) server comes back with every acknowledged XADD, XACK and push.
Without persistence a restart empties the stream and the group: the events not yet processed are gone, which no
consumer can repair (docs/streaming.md, "Faults"). The Feast registry lives in a PostgreSQL database of the test,
dropped at the end. The seeded events and the comparison with an uninterrupted run are
tests/transforms/stream_fault_data.py's.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from platform_common.event_stream.redis_stream import RedisStream
from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR, Settings
from serving.launcher import free_port
from tests.prod.conftest import Deployment, deployment, require_servers, teardown
from tests.transforms.stream_fault_data import (
    assert_same_features,
    checkpointed_batches,
    clean_run,
    crash_runs,
    kill_midstream,
    payloads,
    quarantine_of,
    replayed_rows,
    run_processor,
    start_processor,
    wait_for_batches,
)
from transforms.streaming.processor import GROUP, checkpoint_path, load_checkpoint

pytestmark = [pytest.mark.prod, pytest.mark.e2e]


@dataclass
class PersistentRedis:
    """A redis-server of this test with the append-only file on; killed with SIGKILL, restarted on its folder."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, socket_timeout=5)

    def up(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its file (BusyLoadingError)
            return False
        finally:
            client.close()

    def wait(self, up: bool, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.up() != up:
            assert time.monotonic() < deadline, f"redis on {self.port} still {'down' if up else 'up'}"
            time.sleep(0.05)

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--daemonize", "yes",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--dir", str(self.folder),
                "--logfile", str(self.folder / "redis.log"),
                "--pidfile", str(self.folder / "redis.pid"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.wait(up=True)

    def kill(self) -> None:
        os.kill(int((self.folder / "redis.pid").read_text()), signal.SIGKILL)
        self.wait(up=False)

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)


@pytest.fixture
def redis_stream_deployment(tmp_path):
    """Settings, the processor's environment and the private Redis: a Feast project applied, nothing pushed."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("the stream fault tests start their own redis-server: install it (apt-get install redis-server)")
    server = PersistentRedis(tmp_path / "redis", free_port())
    server.folder.mkdir()
    server.start()
    name = f"shoprank_test_sfault_{os.getpid()}_{secrets.token_hex(3)}"
    base = deployment(tmp_path / "home", name, os.environ.get("SHOPRANK_PG_PASSWORD") or "x")
    settings = Settings(**(base.settings.model_dump() | {"redis_url": server.url, "stream_key": f"shoprank:{name}"}))
    dep = Deployment(base.home, settings, base.env, base.password)
    env = dict(os.environ) | dep.env | {"SHOPRANK_HOME": str(dep.home), "SHOPRANK_REDIS_URL": server.url,
                                        "SHOPRANK_STREAM_KEY": settings.stream_key}  # fmt: skip
    try:
        require_servers(settings)
        env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
        feast = str(Path(sys.executable).with_name("feast"))
        subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)
        yield settings, env, server
    finally:
        if not server.up():
            server.start()
        teardown(dep)
        server.stop()


def check_against_clean(settings: Settings, tmp_path: Path, events: list[bytes]) -> None:
    clean, clean_quarantine = clean_run(tmp_path / "clean", events)
    stream = RedisStream.from_settings(settings)
    assert stream.lag(GROUP) == 0
    stream.close()
    state = load_checkpoint(checkpoint_path(settings.stream_dir, GROUP))
    assert state.engine.counts == clean.counts  # accepted, late, duplicate, every malformed reason: once each
    assert clean.counts["malformed_not_json"] and clean.counts["malformed_null_user_id"] and clean.counts["late"]
    assert quarantine_of(settings.stream_dir) == clean_quarantine  # malformed ones with their reasons
    assert_same_features(get_feature_store(settings), settings.stream_log_dir, clean)


class OutputTail:
    """The processor's output, read on a thread as it comes, so a test can wait for a line while it runs."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            assert self.proc.poll() is None, f"the processor exited ({self.proc.returncode}): {self.text[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout:.0f}s: {self.text[-3000:]}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # never left running
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=10)
        return self.text


# What the processor prints when it meets the outage: a stream read or acknowledgement failed (it reconnects from
# its checkpoint) or a push failed (retried with the same rows), depending on where the kill caught it.
SAW_OUTAGE = r"resuming from the checkpoint|retrying in"


def test_redis_killed_and_restarted_mid_stream_loses_and_double_counts_nothing(redis_stream_deployment, tmp_path):
    settings, env, server = redis_stream_deployment
    events = payloads(seed=17)
    first, rest = events[:700], events[700:]
    stream = RedisStream.from_settings(settings)
    stream.publish_raw(first)
    proc = start_processor(env | {"PYTHONUNBUFFERED": "1"})
    tail = OutputTail(proc)
    try:
        wait_for_batches(settings.stream_dir, 3, proc)
        assert stream.lag(GROUP) > 0, "the processor drained the stream before Redis was killed"
        stream.close()
        server.kill()
        # Down until the processor has met the outage: a kill between two of its commands, healed before the next,
        # is invisible (a pooled connection reconnects at checkout; Feast's Redis client retries a push with
        # backoff for several seconds), and would test nothing.
        tail.wait_for(SAW_OUTAGE, timeout=90)
        assert proc.poll() is None, "the processor exited while Redis was down"
        server.start()
        stream = RedisStream.from_settings(settings)
        assert stream.client.xlen(settings.stream_key) == len(first)  # the append-only file kept the stream
        stream.publish_raw(rest)
        deadline = time.monotonic() + 150
        while stream.lag(GROUP) > 0:
            assert proc.poll() is None, f"the processor exited ({proc.returncode}): {tail.text[-3000:]}"
            assert time.monotonic() < deadline, "the processor did not catch up after the restart"
            time.sleep(0.1)
        settled = checkpointed_batches(settings.stream_dir)
        time.sleep(0.5)
        assert checkpointed_batches(settings.stream_dir) == settled
    finally:
        output = tail.finish(timeout=60)
        stream.close()
    assert proc.returncode == 0, output[-3000:]
    reconnections = re.search(r"(\d+) reconnections", output)
    assert reconnections, output[-3000:]
    assert int(reconnections.group(1)) >= 1 or "retrying in" in output, output[-3000:]
    check_against_clean(settings, tmp_path, events)


def test_processor_killed_mid_batch_on_redis_loses_and_double_counts_nothing(redis_stream_deployment, tmp_path):
    settings, env, _ = redis_stream_deployment
    events = payloads(seed=29)
    stream = RedisStream.from_settings(settings)
    stream.publish_raw(events)
    crash_runs(env)  # its own pending entries are re-read first by the restarted consumer (same name)
    kill_midstream(env, settings.stream_dir)
    assert stream.lag(GROUP) > 0, "the stream was drained before the last kill: it did not land mid-stream"
    final = run_processor(env, "--until-drained")
    stream.close()
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    check_against_clean(settings, tmp_path, events)
    assert replayed_rows(settings.stream_log_dir) > 0  # the crash after the push replayed its batch
