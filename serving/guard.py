"""Bounds on what reaches /rank, enforced before BentoML parses anything.

BentoML 1.4 has no request-size limit of its own (its v2 `http` config has none), and it picks a
deserializer from the Content-Type, so a form or multipart body would be parsed as a form. This ASGI
middleware answers first, for POST /rank:

* `Content-Type` must be `application/json` (parameters such as charset allowed) or absent (taken as JSON):
  anything else is 415.
* The body may be at most MAX_REQUEST_BYTES (256 KiB: 500 candidate ids of 64 characters fit even with every
  character \\u-escaped). A larger Content-Length is refused with 413 without reading the body; a body without
  one (chunked) is read only up to the limit, then refused with 413.

Everything else (JSON syntax, nesting depth, types, at most MAX_CANDIDATES unique ids of at most MAX_ID_LENGTH
characters, NaN and infinities) is the schema's job (serving/schemas.py) and answers 400 with the reason.

Admission control (AdmissionControl below, inside the guard): at most SHOPRANK_MAX_IN_FLIGHT requests to /rank
are in flight per worker process; one more is answered 503 at once, with a JSON reason and `Retry-After`,
instead of queueing without bound behind the GIL (the ranking is CPU work: every request admitted past what
the core keeps up with only makes all of them slower). A request that still waited longer than
SHOPRANK_QUEUE_DEADLINE_SECONDS before its scoring starts is answered the same way by the handler, and so is
one that waited more than SHOPRANK_QUEUE_TARGET_SECONDS while the queue has stood above that target for
SHOPRANK_QUEUE_INTERVAL_SECONDS (`QueueDelayControl`, CoDel's test): under sustained overload the accepted
requests keep about the latency they have without it. BentoML's own `traffic.max_concurrency` was not used: it
answers 429 without
`Retry-After`, limits every route (the merchant endpoints too) and is split evenly across workers.

Time spent before the worker sees a request (the kernel's accept queue, HTTP parsing on a saturated event loop)
is invisible to a server-side clock, and under overload it is most of the delay. A proxy or load balancer in
front stamps the arrival (`X-Request-Start: t=<microseconds since the epoch>`, nginx's `t=${msec}`, Heroku's
router, New Relic's convention; rack-timeout's `wait_timeout` sheds on it the same way). When the header is
there (and SHOPRANK_REQUEST_START_HEADER is on), the waits above count from that arrival, and admission
applies the deadline and the queue-delay test before the request takes a slot: a request that already waited
too long costs one cheap 503 instead of a scoring. Without it, they count from admission, as before.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from threading import Lock
from time import perf_counter, time
from typing import Any

MAX_REQUEST_BYTES = 256 * 1024
GUARDED_PATHS = frozenset({"/rank"})

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _answer(send: Send, status: int, error: str) -> None:
    payload = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# When this request arrived or was admitted (perf_counter), for the handler's deadline check: a context variable,
# because BentoML runs the sync handler in a thread with a copy of the request's context.
ADMITTED_AT: ContextVar[float | None] = ContextVar("shoprank_admitted_at", default=None)


def shed_body(reason: str, detail: str) -> dict[str, str]:
    return {"error": f"overloaded: {detail}", "reason": reason}


def waited_since_admission() -> float | None:
    """Seconds since this request arrived (its trusted X-Request-Start stamp) or, without one, was admitted.

    None for in-process callers."""
    admitted = ADMITTED_AT.get()
    return None if admitted is None else perf_counter() - admitted


# A stamp further in the future than this is another machine's clock, not a wait: it is ignored (and so is one
# older than MAX_STAMP_AGE_SECONDS, which no queue holds).
CLOCK_SKEW_SECONDS = 1.0
MAX_STAMP_AGE_SECONDS = 3600.0


def request_start_age(value: bytes | None, now: float | None = None) -> float | None:
    """Seconds since the `X-Request-Start` stamp (`t=` optional; seconds, ms or µs since the epoch by size).

    None when the header is absent, unparsable or implausible: the request is then timed from admission.
    """
    if not value:
        return None
    text = value.strip()
    if text[:2] in (b"t=", b"T="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if stamp != stamp or stamp <= 0:  # NaN or nonsense
        return None
    if stamp > 1e14:  # microseconds (nginx with `t=${msec}` sends seconds.millis; Heroku and New Relic µs or ms)
        stamp /= 1e6
    elif stamp > 1e11:
        stamp /= 1e3
    age = (time() if now is None else now) - stamp
    if age < -CLOCK_SKEW_SECONDS or age > MAX_STAMP_AGE_SECONDS:
        return None
    return max(age, 0.0)


class QueueDelayControl:
    """Sheds at the start of scoring once this worker's queue has stood for a while (CoDel's idea, RFC 8289).

    A fixed deadline cannot tell a burst from overload: sixteen requests arriving together queue behind each
    other for a moment and should all be served, while a sustained excess keeps every request waiting and
    only makes all of them late. CoDel's test is whether even the *least* delayed request stayed above `target`
    for a whole `interval`: then the queue is standing, not passing, and every request that waited more than
    `target` is answered 503 until one starts under it again. What is accepted under overload therefore waits
    about `target`, not the length of the queue. (Only the entering and leaving of the shedding state is
    CoDel's; its rising drop rate is not needed here, since a shed answer costs next to nothing.)

    Handler threads call `should_shed` concurrently, hence the lock.
    """

    def __init__(self, target_seconds: float, interval_seconds: float) -> None:
        self.target = target_seconds
        self.interval = interval_seconds
        self._above_since: float | None = None  # when the delay first stayed above target, this episode
        self._shedding = False
        self._lock = Lock()

    def should_shed(self, waited: float, now: float) -> bool:
        with self._lock:
            if waited < self.target:
                self._above_since = None
                self._shedding = False
                return False
            if self._above_since is None:
                self._above_since = now
            elif now - self._above_since >= self.interval:
                self._shedding = True
            return self._shedding


class RequestGuard:
    def __init__(self, app: Any, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in GUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for key, value in scope.get("headers", ()):
            headers[key.lower()] = value
        content_type = headers.get(b"content-type")
        if content_type is not None:
            media = content_type.split(b";", 1)[0].strip().lower()
            if media != b"application/json":
                shown = media.decode("latin-1")[:80]
                await _answer(send, 415, f"content-type must be application/json, not {shown!r}")
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send, 400, "invalid content-length")
                return
            if declared > self.max_bytes:
                await _answer(send, 413, f"request body of {declared} bytes exceeds {self.max_bytes} bytes")
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                await _answer(send, 413, f"request body exceeds {self.max_bytes} bytes")
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def late_reason(
    waited: float, now: float, deadline: float | None, queue: QueueDelayControl | None, since: str
) -> tuple[str, str] | None:
    """(reason, detail) when a request that waited `waited` s is too late to score: past the deadline, or past the
    queue-delay target while the queue stands. Admission applies it to a stamped wait, the handler before scoring."""
    if deadline is not None and waited > deadline:
        return "deadline", f"waited {waited:.3f} s {since} (SHOPRANK_QUEUE_DEADLINE_SECONDS)"
    if queue is not None and queue.should_shed(waited, now):
        detail = (
            f"waited {waited:.3f} s {since} while the queue stood above SHOPRANK_QUEUE_TARGET_SECONDS={queue.target:g}"
        )
        return "queue_delay", detail
    return None


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class AdmissionControl:
    """At most `max_in_flight` POST /rank requests in flight in this worker; the next is shed with 503.

    One event loop per worker process runs every ASGI call, so a plain counter is exact without a lock.
    A shed answer keeps the connection open: the guard in front has already read the body.
    """

    def __init__(
        self,
        app: Any,
        max_in_flight: int,
        retry_after_seconds: int = 1,
        on_shed: Callable[[str], None] | None = None,
        request_start_header: bool = False,
        deadline_seconds: float | None = None,
        queue: QueueDelayControl | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_seconds).encode()
        self.on_shed = on_shed
        self.request_start_header = request_start_header
        self.deadline = deadline_seconds
        self.queue = queue
        self.in_flight = 0

    async def _shed(self, send: Send, reason: str, detail: str) -> None:
        if self.on_shed is not None:
            self.on_shed(reason)
        payload = json.dumps(shed_body(reason, detail)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"retry-after", self.retry_after),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in GUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        now = perf_counter()
        arrived = now
        if self.request_start_header:
            age = request_start_age(_header(scope, b"x-request-start"))
            if age is not None:
                late = late_reason(age, now, self.deadline, self.queue, "since X-Request-Start")
                if late is not None:
                    await self._shed(send, *late)
                    return
                arrived = now - age
        if self.in_flight >= self.max_in_flight:
            detail = f"{self.in_flight} requests in flight in this worker (SHOPRANK_MAX_IN_FLIGHT)"
            await self._shed(send, "in_flight", detail)
            return
        self.in_flight += 1
        # The handler's wait then counts from the upstream arrival when it is known, from here otherwise.
        token = ADMITTED_AT.set(arrived)
        try:
            await self.app(scope, receive, send)
        finally:
            ADMITTED_AT.reset(token)
            self.in_flight -= 1
