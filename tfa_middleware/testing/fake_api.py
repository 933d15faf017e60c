"""What both fake provider servers share: the request log, the outbox, and the fault knobs."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

Clock = Callable[[], float]

_ERROR_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n"
    "<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable"}


def retry_after(response: Response, seconds: float) -> Response:
    """The response with ``Retry-After`` in whole seconds (at least 1), as a 429 carries it."""
    response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def compact_json(status: int, document: Mapping[str, Any]) -> Response:
    """A provider's JSON answer: compact, keys in the documented order, ``application/json``.

    Compact matters: authy-python decides "valid" by looking for the bytes ``"token":"is valid"``.
    """
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json")


@dataclass
class Faults:
    """Knobs that make a fake misbehave. They apply to every request (or, with ``path_contains``,
    to those whose path contains that text) until changed; :meth:`clear` turns them all off."""

    latency_seconds: float = 0.0  # wait this long before answering (combine with a short client timeout)
    status: int | None = None  # answer with this status (e.g. 500, 502) and an HTML error page
    rate_limited: bool = False  # answer with the provider's own "slow down" error
    garbage: bool = False  # answer 200, Content-Type JSON, with a body that is not JSON
    # Send the headers and half a body, then drop the connection. Over real HTTP (serve) the
    # client sees a broken connection; in process, httpx.ASGITransport re-raises DroppedConnection.
    drop: bool = False
    #: Answer with exactly this (status, body, content type): quirks, odd bodies, any error code.
    answer: tuple[int, bytes, str] | None = None
    path_contains: str = ""

    def clear(self) -> None:
        for knob in fields(self):
            setattr(self, knob.name, getattr(Faults, knob.name))

    def applies_to(self, path: str) -> bool:
        return self.path_contains in path


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str  # as it arrived, still percent-encoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]  # a form body, parsed; empty for others
    body: bytes
    client: tuple[str, int] | None = None  # the peer's address and port: one per connection


@dataclass(frozen=True, slots=True)
class SentCode:
    """One code the fake "delivered": to whom (E.164), what, how, and when."""

    to: str
    code: str
    channel: str
    at: float
    locale: str | None = None  # the language asked for (Verify's Locale, Authy's locale), if any


class DroppedConnection(ConnectionAbortedError):
    """Raised by a fake after half an answer: a real server then drops the connection."""


class FakeApi:
    """Base of the fakes: an ASGI app that records each request, applies the fault knobs, then
    lets the Starlette routes of the subclass answer. Safe to inspect from the test's thread
    while a real server runs the app in another (a lock guards the state)."""

    def __init__(
        self, *, clock: Clock = time.time, on_send: Callable[[SentCode], None] | None = None
    ) -> None:
        self.clock = clock
        self.on_send = on_send
        self.requests: list[RecordedRequest] = []
        self.outbox: list[SentCode] = []
        self.faults = Faults()
        #: The ``Retry-After`` of the "slow down" answer to ``faults.rate_limited``.
        self.retry_after_seconds = 30
        self.lock = threading.RLock()
        self.app = Starlette(routes=self.routes())

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def rate_limit_response(self) -> Response:
        raise NotImplementedError

    def authenticate(self, request: RecordedRequest) -> Response | None:
        """None when the credentials are good, else the provider's answer to bad ones."""
        raise NotImplementedError

    # ------------------------------------------------------------------ inspection

    def last_code(self, to: str | None = None) -> str:
        with self.lock:
            for sent in reversed(self.outbox):
                if to is None or sent.to == to:
                    return sent.code
        raise LookupError(f"the fake sent no code{' to ' + to if to else ''}")

    def deliver(self, sent: SentCode) -> None:
        with self.lock:
            self.outbox.append(sent)
        if self.on_send is not None:
            self.on_send(sent)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        recorded = _record(scope, bytes(body))
        with self.lock:
            self.requests.append(recorded)
            faults = replace(self.faults) if self.faults.applies_to(recorded.path) else Faults()
        if faults.latency_seconds and await _left_while_waiting(receive, faults.latency_seconds):
            return  # the client gave up first: this request is never acted on
        response = self._fault_response(faults) or self.authenticate(recorded)
        if faults.drop:
            await _drop(send)
            return
        if response is None:
            scope = {**scope, "state": {**scope.get("state", {}), "recorded": recorded}}
            await self.app(scope, _replay(bytes(body), receive), send)
        else:
            await response(scope, _replay(bytes(body), receive), send)

    def _fault_response(self, faults: Faults) -> Response | None:
        if faults.answer is not None:
            status, content, media_type = faults.answer
            return Response(content, status_code=status, media_type=media_type)
        if faults.status is not None:
            reason = _REASONS.get(faults.status, "Error")
            page = _ERROR_PAGE.format(status=faults.status, reason=reason)
            return Response(page, status_code=faults.status, media_type="text/html")
        if faults.rate_limited:
            return self.rate_limit_response()
        if faults.garbage:
            return Response(b'\x1f\x8b\x08garbage{"succ', status_code=200, media_type="application/json")
        return None


def recorded(scope: Scope) -> RecordedRequest:
    """The request as the fake recorded it (for the route handlers)."""
    value: RecordedRequest = scope["state"]["recorded"]
    return value


def _record(scope: Scope, body: bytes) -> RecordedRequest:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    raw_path = scope.get("raw_path") or scope["path"].encode()
    content_type = headers.get("content-type", "")
    form: dict[str, str] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return RecordedRequest(
        method=scope["method"],
        path=raw_path.decode("latin-1"),
        query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
        headers=headers,
        form=form,
        body=body,
        client=tuple(scope["client"]) if scope.get("client") else None,
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then whatever the server says next (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _drop(send: Send) -> None:
    body = b'{"message":"Token is valid.","token":"is val'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"200")],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    raise DroppedConnection("the fake dropped the connection mid-answer")


async def _left_while_waiting(receive: Any, seconds: float) -> bool:
    """Wait ``seconds`` before answering, as a slow service does; True when the client hung up
    meanwhile. The request is then dropped unprocessed, so what a test sees afterwards (no code
    sent) does not depend on how long a loaded machine takes to look."""
    with anyio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False
