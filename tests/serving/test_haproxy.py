"""HAProxy in front of the service (serving/haproxy.py): the rendered configuration is one HAProxy accepts, and
over its limit HAProxy itself answers 503 with Retry-After (counted on its /metrics) while the rest is proxied.

These run the real `haproxy` binary (`make install-haproxy`); a missing binary fails them. The service behind it
here is a slow stand-in, so the queue forms for sure; tests/serving/test_admission.py puts HAProxy in front of the
real service on the tiny platform."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from serving.haproxy import ProxyConfig, app, check, counters, render, running_haproxy
from serving.launcher import free_port

pytestmark = pytest.mark.integration


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(0.2)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


def _cfg(backend: str, **kw: int) -> ProxyConfig:
    return ProxyConfig(backend=backend, port=free_port(), stats_port=free_port(), **kw)


def test_the_rendered_configuration_passes_haproxy_check(tmp_path: Path) -> None:
    cfg = _cfg("127.0.0.1:3001", max_conn=3, queue_timeout_ms=7, retry_after_seconds=2)
    check(cfg, tmp_path / "haproxy.cfg")  # raises with HAProxy's message if it rejects the file
    text = render(cfg)
    assert "server ranker 127.0.0.1:3001 maxconn 3" in text
    assert "timeout queue 7ms" in text and "set-header Retry-After 2 if { status 503 }" in text


def test_over_its_limit_haproxy_sheds_with_retry_after_and_counts_it(slow_backend: str) -> None:
    cfg = _cfg(slow_backend, max_conn=1, queue_timeout_ms=50)
    with running_haproxy(cfg) as url, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.post(f"{url}/rank", content=b"{}", timeout=10), range(8)))
        statuses = sorted(r.status_code for r in answers)
        # one request in the backend at a time, 0.2 s each: within a 50 ms queue only the first few get through
        assert set(statuses) == {200, 503}, statuses
        shed = [r for r in answers if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" for r in shed)
        seen = counters(f"http://127.0.0.1:{cfg.stats_port}")
        assert seen["http_requests_total"] == 8
        assert seen['http_responses_total{code="5xx"}'] == len(shed)
        assert seen['http_responses_total{code="2xx"}'] == 8 - len(shed)
        # one at a time nothing is shed
        assert httpx.post(f"{url}/rank", content=b"{}", timeout=10).status_code == 200


def test_a_bad_option_is_a_one_line_error() -> None:
    out = CliRunner().invoke(app, ["config", "--queue-ms", "0"])
    assert out.exit_code == 2
    said = " ".join(out.output.replace("│", " ").split())  # rich wraps the message in a box
    assert "queue_timeout_ms=0: Input should be greater than or equal to 1" in said
    ok = CliRunner().invoke(app, ["config", "--backend", "10.0.0.5:3000", "--max-conn", "4"])
    assert ok.exit_code == 0 and "server ranker 10.0.0.5:3000 maxconn 4" in ok.output
