"""`GET /readyz` with a body: ready or not, why not, and the model versions in use.

BentoML's own /readyz answers only with a status code; this ASGI middleware answers the same path first,
from the service instance's status, so operators and load balancers see what is being served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

StatusProvider = Callable[[], tuple[int, dict[str, Any]]]
_provider: StatusProvider | None = None


def set_status_provider(provider: StatusProvider) -> None:
    global _provider
    _provider = provider


class ReadinessMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") == "http" and scope.get("path") == "/readyz" and _provider is not None:
            status, body = _provider()
            payload = json.dumps(body).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, receive, send)
