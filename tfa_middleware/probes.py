"""The operators' paths (``operations.metrics_path``, ``operations.readiness_path``), for both
middlewares: answered only to a client address in ``operations.allow`` or ``trusted_proxies``
(the address as the middleware reads it, behind trusted proxies); anybody else gets the same 404
as a path that does not exist, so the paths are not revealed.

Readiness asks the database on every probe (a ping and the schema's revision): 200 ``ready``, or
503 ``not ready: why`` when this process could not serve a sign-in (never an answer cached from a
better moment). A change of state is logged once.

They are reached only for a path outside every interface (the settings refuse one inside), in the
middleware's branch for unprotected paths: the hot path does not look for them.
"""

from __future__ import annotations

import logging

from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from .asgi import client_ip, in_networks
from .service import TwoFactor
from .settings import Settings

log = logging.getLogger("tfa_middleware")
_NO_STORE = {"cache-control": "no-store"}


class Probes:
    def __init__(self, settings: Settings, service: TwoFactor) -> None:
        ops = settings.operations
        self.service = service
        self.trusted = settings.trusted_proxies
        self.allowed = (*ops.allow, *settings.trusted_proxies)
        self.metrics_path = ops.metrics_path
        self.readiness_path = ops.readiness_path
        self.paths = frozenset(ops.paths)
        self._was_ready: bool | None = None

    async def __call__(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.answer(path, scope)
        await response(scope, receive, send)

    async def answer(self, path: str, scope: Scope) -> Response:
        if scope["type"] != "http" or not in_networks(client_ip(scope, self.trusted), self.allowed):
            return PlainTextResponse("Not Found", status_code=404)
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("Method Not Allowed", 405, {"allow": "GET, HEAD"})
        if path == self.metrics_path:
            body, content_type = await self.service.operations.metrics_text()
            return Response(body, 200, _NO_STORE, media_type=content_type)
        return await self._readiness()

    async def _readiness(self) -> Response:
        why = await self.service.operations.not_ready()
        ready = why is None
        if ready != self._was_ready:
            if ready:
                log.info("readiness: ready")
            else:
                log.error("readiness: not ready: %s", why)
            self._was_ready = ready
        if why is None:
            return PlainTextResponse("ready\n", 200, _NO_STORE)
        return PlainTextResponse(f"not ready: {why}\n", 503, _NO_STORE)
