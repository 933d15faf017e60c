"""Raw ASGI: httpx normalises some URLs before sending (``..``, ``\\``, ``//``); these helpers hand
the middleware the exact scope a server would build, so smuggled paths arrive unchanged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


class Recorder:
    """Wraps the shop and notes every scope that reached it (i.e. got past the middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await self.app(scope, receive, send)

    @property
    def paths(self) -> list[str]:
        return [scope["path"] for scope in self.scopes]


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)


def _scope(
    kind: str, path: str, raw_path: bytes | None, headers: dict[str, str], scheme: str, query: bytes
) -> dict[str, Any]:
    return {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "server": ("shop.test", 443 if scheme in ("https", "wss") else 80),
        "client": ("203.0.113.9", 50123),
        "root_path": "",
        "path": path,
        "raw_path": path.encode("utf-8") if raw_path is None else raw_path,
        "query_string": query,
        "headers": [(b"host", b"shop.test")]
        + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }


async def asgi_request(
    app: Any,
    path: str,
    *,
    raw_path: bytes | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    scheme: str = "http",
    query: bytes = b"",
) -> RawResponse:
    """One HTTP request straight into ``app``; ``path`` is used verbatim as ``scope["path"]``."""
    scope = _scope("http", path, raw_path, headers or {}, scheme, query)
    scope["method"] = method
    done = asyncio.Event()
    request_sent = False
    status = 0
    response_headers: list[tuple[str, str]] = []
    body = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.extend(
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message["headers"]
            )
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return RawResponse(status, response_headers, bytes(body))


async def asgi_websocket(
    app: Any, path: str, *, headers: dict[str, str] | None = None, scheme: str = "ws"
) -> list[dict[str, Any]]:
    """Open a websocket to ``app``; return every message the app (or middleware) sent."""
    scope = _scope("websocket", path, None, headers or {}, scheme, b"")
    scope["subprotocols"] = []
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    closed = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            closed.set()

    await app(scope, receive, send)
    return sent
