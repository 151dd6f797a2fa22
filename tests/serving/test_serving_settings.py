"""Serving settings (serving/settings.py): defaults as documented, bounds enforced, one line per bad value,
and a bad value stops `bentoml serve` (and the service's import) with that one line, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from platform_common.settings import REPO_ROOT
from serving.settings import ServingSettings, SettingsError, load

VARIABLES = [f"SHOPRANK_{name.upper()}" for name in ServingSettings.model_fields]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_the_documented_ones(clean_env) -> None:
    s = load()
    assert (s.workers, s.threads, s.feature_read, s.snapshot_poll_seconds) == (2, 8, "snapshot", 5.0)
    assert (s.reload_seconds, s.load_retry_seconds, s.shadow) == (30.0, 5.0, False)
    assert (s.request_log_rate, s.request_log_flush_seconds, s.access_log, s.trace_rank) == (0.01, 10.0, False, False)
    assert (s.max_in_flight, s.queue_deadline_seconds, s.retry_after_seconds) == (16, 1.0, 1)


def test_every_variable_is_in_the_readme_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("Serving settings", 1)[1].split("\n\n", 2)[1]
    for name in VARIABLES:
        assert f"`{name}`" in table, name


def test_values_are_parsed(clean_env) -> None:
    clean_env.setenv("SHOPRANK_WORKERS", "3")
    clean_env.setenv("SHOPRANK_SHADOW", "yes")
    clean_env.setenv("SHOPRANK_ACCESS_LOG", "0")
    clean_env.setenv("SHOPRANK_FEATURE_READ", "direct")
    clean_env.setenv("SHOPRANK_REQUEST_LOG_RATE", "0")
    clean_env.setenv("SHOPRANK_TRACE_RANK", "")  # empty is unset, as before
    s = load()
    assert (s.workers, s.shadow, s.access_log, s.feature_read, s.request_log_rate) == (3, True, False, "direct", 0)
    assert s.trace_rank is False
    with pytest.raises(ValidationError):  # frozen: read once, never changed underneath a running service
        s.workers = 4  # type: ignore[misc]


BAD = [
    ("SHOPRANK_WORKERS", "0", "a whole number >= 1 and <= 64"),
    ("SHOPRANK_WORKERS", "65", "a whole number >= 1 and <= 64"),
    ("SHOPRANK_WORKERS", "two", "a whole number >= 1 and <= 64"),
    ("SHOPRANK_THREADS", "257", "a whole number >= 1 and <= 256"),
    ("SHOPRANK_REQUEST_LOG_RATE", "1.5", "a number >= 0 and <= 1"),
    ("SHOPRANK_REQUEST_LOG_RATE", "-0.1", "a number >= 0 and <= 1"),
    ("SHOPRANK_REQUEST_LOG_FLUSH_SECONDS", "0", "a number > 0 and <= 3600"),
    ("SHOPRANK_RELOAD_SECONDS", "nan", "a number > 0 and <= 86400"),
    ("SHOPRANK_LOAD_RETRY_SECONDS", "-5", "a number > 0 and <= 3600"),
    ("SHOPRANK_SNAPSHOT_POLL_SECONDS", "0", "a number > 0 and <= 3600"),
    ("SHOPRANK_FEATURE_READ", "redis", "one of snapshot, direct, feast"),
    ("SHOPRANK_SHADOW", "maybe", "a boolean"),
    ("SHOPRANK_ACCESS_LOG", "2", "a boolean"),
    ("SHOPRANK_MAX_IN_FLIGHT", "0", "a whole number >= 1 and <= 1024"),
    ("SHOPRANK_QUEUE_DEADLINE_SECONDS", "inf", "a number > 0 and <= 60"),
    ("SHOPRANK_RETRY_AFTER_SECONDS", "0.5", "a whole number >= 1 and <= 3600"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_range(clean_env, name, value, allowed) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{name}={value!r}: expected ")
    assert allowed in message


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "import serving.service"],
        [sys.executable, "-m", "bentoml", "serve", "serving.service:Ranker", "--port", "1"],
    ],
    ids=["import", "bentoml serve"],
)
def test_a_bad_value_stops_the_service_with_one_line(tmp_path, command) -> None:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env |= {"SHOPRANK_HOME": str(tmp_path), "SHOPRANK_THREADS": "0", "BENTOML_DO_NOT_TRACK": "true"}
    proc = _run(command, env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert lines == ["shoprank: invalid serving setting: SHOPRANK_THREADS='0': expected a whole number >= 1 and <= 256"]
    assert not re.search("Traceback", proc.stderr)
