"""Admission control of /rank (serving/guard.py): a bounded number in flight per worker, a deadline on the wait
before scoring, and a 503 with a JSON reason and Retry-After for what is shed.

Unit tests drive the ASGI middleware directly with a handler that blocks until released; the end-to-end tests
start the real service with a limit of one request in flight (and, separately, a deadline nothing can meet)
and check the answers and the counter on /metrics."""

from __future__ import annotations

import asyncio
import json
from time import perf_counter, time
from typing import Any

import httpx
import pytest

from serving.guard import (
    ADMITTED_AT,
    AdmissionControl,
    QueueDelayControl,
    request_start_age,
    waited_since_admission,
)
from serving.launcher import running_service


class Blocking:
    """An ASGI app that answers 200 once `release` is set, recording how many calls were inside at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside = 0
        self.most = 0
        self.admitted_at: list[float | None] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        self.admitted_at.append(ADMITTED_AT.get())
        try:
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
        finally:
            self.inside -= 1


async def _call(
    app: Any, path: str = "/rank", method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": headers or []}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_over_the_limit_is_shed_at_once_with_503_reason_and_retry_after() -> None:
    async def scenario() -> None:
        inner = Blocking()
        shed: list[str] = []
        app = AdmissionControl(inner, max_in_flight=3, retry_after_seconds=2, on_shed=shed.append)
        held = [asyncio.create_task(_call(app)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert app.in_flight == 3 and inner.inside == 3
        started = perf_counter()
        status, headers, body = await asyncio.wait_for(_call(app), timeout=1)  # answered without waiting
        assert perf_counter() - started < 0.5
        assert status == 503
        assert headers[b"retry-after"] == b"2"
        assert headers[b"content-type"] == b"application/json"
        assert json.loads(body)["reason"] == "in_flight"
        assert "in flight" in json.loads(body)["error"]
        assert shed == ["in_flight"]
        # other routes and methods are not limited
        other = asyncio.create_task(_call(app, path="/merchant/diagnose"))
        get = asyncio.create_task(_call(app, method="GET"))
        await asyncio.sleep(0.01)
        assert inner.inside == 5
        inner.release.set()
        results = await asyncio.gather(*held, other, get)
        assert [r[0] for r in results] == [200] * 5
        assert app.in_flight == 0
        # the slots are free again
        status, _, _ = await _call(app)
        assert status == 200 and shed == ["in_flight"]
        assert inner.most == 5  # 3 /rank + 2 unlimited, never a 4th /rank
        assert all(t is not None for t in inner.admitted_at[:3])

    asyncio.run(scenario())


def test_a_failing_handler_gives_its_slot_back() -> None:
    async def boom(scope: dict, receive: Any, send: Any) -> None:
        raise RuntimeError("handler failed")

    async def scenario() -> None:
        app = AdmissionControl(boom, max_in_flight=1)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await _call(app)
        assert app.in_flight == 0

    asyncio.run(scenario())


def test_wait_is_measured_from_admission() -> None:
    assert waited_since_admission() is None  # not admitted through the middleware (in-process callers)
    token = ADMITTED_AT.set(perf_counter() - 2.0)
    try:
        waited = waited_since_admission()
        assert waited is not None and 2.0 <= waited < 3.0
    finally:
        ADMITTED_AT.reset(token)


def test_a_burst_that_drains_within_the_interval_is_never_shed() -> None:
    control = QueueDelayControl(target_seconds=0.010, interval_seconds=0.100)
    # sixteen requests arriving together: each waits behind the previous ones for 5 ms of scoring
    burst = [control.should_shed(waited=0.005 * i, now=1.0 + 0.005 * i) for i in range(16)]
    assert not any(burst)
    # the next one finds the queue empty: the episode is over
    assert not control.should_shed(waited=0.0, now=1.2)
    assert not control.should_shed(waited=0.05, now=1.21)


def test_a_standing_queue_sheds_what_waited_past_target_until_one_starts_under_it() -> None:
    control = QueueDelayControl(target_seconds=0.010, interval_seconds=0.100)
    decisions = [control.should_shed(waited=0.030, now=t / 1000) for t in range(0, 300, 10)]
    first_shed = decisions.index(True)
    assert not any(decisions[:first_shed]) and all(decisions[first_shed:])
    assert first_shed == 10  # 100 ms after the delay first stayed above target
    assert not control.should_shed(waited=0.004, now=0.31)  # under target: served, and shedding stops
    assert not control.should_shed(waited=0.030, now=0.32)  # a new episode starts its own interval
    assert control.should_shed(waited=0.030, now=0.43)


def test_request_start_stamps_are_read_in_any_unit_and_implausible_ones_ignored() -> None:
    now = 1_800_000_000.0
    assert request_start_age(b"t=1799999999750000", now) == pytest.approx(0.25)  # microseconds
    assert request_start_age(b"1799999999750", now) == pytest.approx(0.25)  # milliseconds
    assert request_start_age(b"t=1799999999.750", now) == pytest.approx(0.25)  # seconds (nginx's ${msec})
    assert request_start_age(b"t=1800000000400000", now) == 0.0  # a little ahead: clocks differ, no wait
    for bad in (None, b"", b"t=", b"soon", b"t=nan", b"t=-5", b"t=1800000090", b"t=1700000000"):
        assert request_start_age(bad, now) is None, bad  # absent, garbage, far future, older than any queue


def _stamped(age: float) -> list[tuple[bytes, bytes]]:
    return [(b"x-request-start", f"t={round((time() - age) * 1e6)}".encode())]


def test_a_request_stamped_too_long_ago_is_shed_at_admission_without_taking_a_slot() -> None:
    async def scenario() -> None:
        inner = Blocking()
        shed: list[str] = []
        app = AdmissionControl(
            inner, max_in_flight=2, on_shed=shed.append, request_start_header=True, deadline_seconds=0.5
        )
        status, headers, body = await asyncio.wait_for(_call(app, headers=_stamped(2.0)), timeout=1)
        assert status == 503 and headers[b"retry-after"] == b"1"
        assert json.loads(body)["reason"] == "deadline" and "X-Request-Start" in json.loads(body)["error"]
        assert shed == ["deadline"] and inner.admitted_at == [] and app.in_flight == 0
        # a fresh stamp is admitted, and the handler's wait counts from the stamped arrival, not from admission
        task = asyncio.create_task(_call(app, headers=_stamped(0.2)))
        await asyncio.sleep(0.01)
        arrived = inner.admitted_at[-1]
        assert arrived is not None and 0.15 < perf_counter() - arrived < 0.5
        inner.release.set()
        assert (await task)[0] == 200
        # the header is not trusted when the setting is off: the same stale stamp is admitted
        trusting_none = AdmissionControl(inner, max_in_flight=2, deadline_seconds=0.5)
        assert (await _call(trusting_none, headers=_stamped(2.0)))[0] == 200

    asyncio.run(scenario())


def test_a_standing_queue_of_stamped_requests_is_shed_at_admission() -> None:
    async def scenario() -> None:
        inner = Blocking()
        inner.release.set()
        shed: list[str] = []
        queue = QueueDelayControl(target_seconds=0.010, interval_seconds=0.050)
        app = AdmissionControl(
            inner, max_in_flight=64, on_shed=shed.append, request_start_header=True, deadline_seconds=5, queue=queue
        )
        statuses = []
        for _ in range(12):  # every request already waited 30 ms upstream: the queue is standing
            statuses.append((await _call(app, headers=_stamped(0.030)))[0])
            await asyncio.sleep(0.01)
        assert statuses[0] == 200 and statuses[-1] == 503, statuses
        assert set(shed) == {"queue_delay"}
        assert (await _call(app, headers=_stamped(0.0)))[0] == 200  # one under target ends the episode
        assert (await _call(app, headers=_stamped(0.030)))[0] == 200

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------------------------
# End to end, against `bentoml serve`
# ------------------------------------------------------------------------------------------------------------

BASE_ENV = {"SHOPRANK_REQUEST_LOG_RATE": "0", "SHOPRANK_WORKERS": "1"}


def _bodies(settings: Any, n: int) -> list[bytes]:
    from benchmarks.loadgen import encode, sample_requests

    return encode(sample_requests(settings.marts_dir, n, candidates=500))


async def _burst(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=len(bodies))) as client:
        headers = {"content-type": "application/json"}
        return list(await asyncio.gather(*(client.post(f"{url}/rank", content=b, headers=headers) for b in bodies)))


def _shed_metric(url: str, reason: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'shoprank_shed_requests_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_service_sheds_a_burst_over_its_limit_and_serves_the_rest(tiny_platform) -> None:
    """Then the same burst through HAProxy in front (serving/haproxy.py): HAProxy does the shedding, with the
    same 503 and Retry-After, the service sheds nothing more, and what is proxied is the service's own answer."""
    from serving.haproxy import ProxyConfig, backend_of, counters, running_haproxy
    from serving.launcher import free_port

    env = BASE_ENV | {"SHOPRANK_MAX_IN_FLIGHT": "1"}
    bodies = _bodies(tiny_platform, 24)
    with running_service(tiny_platform, extra_env=env) as url:
        responses = asyncio.run(_burst(url, bodies))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses and 503 in statuses, statuses
        shed = [r for r in responses if r.status_code == 503]
        for r in shed:
            assert r.headers["retry-after"] == "1"
            assert r.json()["reason"] == "in_flight", r.text
        assert _shed_metric(url, "in_flight") == len(shed)
        # one at a time, nothing is shed
        for body in bodies[:5]:
            r = httpx.post(f"{url}/rank", content=body, headers={"content-type": "application/json"}, timeout=30)
            assert r.status_code == 200, r.text
        assert _shed_metric(url, "in_flight") == len(shed)

        cfg = ProxyConfig(backend=backend_of(url), port=free_port(), stats_port=free_port(), max_conn=1)
        with running_haproxy(cfg) as front:
            proxied = asyncio.run(_burst(front, bodies))
            statuses = [r.status_code for r in proxied]
            assert set(statuses) <= {200, 503}, statuses
            assert 200 in statuses, statuses
            assert all(r.headers["retry-after"] == "1" for r in proxied if r.status_code == 503)
            front_shed = counters(f"http://127.0.0.1:{cfg.stats_port}")['http_responses_total{code="5xx"}']
            assert front_shed == statuses.count(503)
            assert _shed_metric(url, "in_flight") == len(shed)  # one at a time reaches it: nothing shed there
            body = {"content": bodies[0], "headers": {"content-type": "application/json"}, "timeout": 30}
            direct, via = httpx.post(f"{url}/rank", **body), httpx.post(f"{front}/rank", **body)  # type: ignore[arg-type]
            assert via.status_code == direct.status_code == 200
            assert [(i["product_id"], i["pctr"]) for i in via.json()["ranking"]] == [
                (i["product_id"], i["pctr"]) for i in direct.json()["ranking"]
            ]


def test_service_answers_503_when_the_deadline_passed_before_scoring(tiny_platform) -> None:
    env = BASE_ENV | {"SHOPRANK_QUEUE_DEADLINE_SECONDS": "0.000001", "SHOPRANK_RETRY_AFTER_SECONDS": "3"}
    body = _bodies(tiny_platform, 1)[0]
    with running_service(tiny_platform, extra_env=env) as url:
        for _ in range(3):
            r = httpx.post(f"{url}/rank", content=body, headers={"content-type": "application/json"}, timeout=30)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "3"
            assert r.json()["reason"] == "deadline" and "SHOPRANK_QUEUE_DEADLINE_SECONDS" in r.json()["error"]
        assert _shed_metric(url, "deadline") == 3
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200  # shedding is not unreadiness
