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
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
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
