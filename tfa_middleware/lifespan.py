"""The ASGI lifespan, when the middleware built its service itself: passed through to the app,
and the service closed once the app has finished shutting down (or failed to start), before the
server hears so and exits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tfa_middleware")

# The app's last word in a lifespan: after these the server sends nothing more, so we close then.
_LIFESPAN_ENDS = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)


async def lifespan(
    app: ASGIApp, close: Callable[[], Awaitable[None]], scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the app's lifespan and ``close`` at its end.

    An app that does not take part (it raises, or returns, before answering the startup, as
    uvicorn's ``lifespan: auto`` reads it) gets the lifespan answered for it, so ``close`` still
    runs at shutdown. A failing ``close`` is logged: the server is shutting down either way, and a
    failed close must not hide the app's answer.
    """
    received: set[str] = set()
    answered: set[str] = set()

    async def closing() -> None:
        try:
            await close()
        except Exception:
            log.exception("closing the two-factor service at shutdown failed")

    async def app_receive() -> Message:
        message = await receive()
        received.add(message["type"])
        return message

    async def app_send(message: Message) -> None:
        if message["type"] in _LIFESPAN_ENDS:
            await closing()
        answered.add(message["type"])
        await send(message)

    try:
        await app(scope, app_receive, app_send)
    except Exception as exc:
        if answered:
            raise  # the app runs the lifespan and failed in it: the server decides what follows
        # Not a failed startup: a framework's app answers lifespan.startup.failed before it raises.
        log.info("the app does not handle the ASGI lifespan (%r); the middleware answers it", exc)
    if answered:
        return
    if "lifespan.startup" not in received:
        await receive()
    if "lifespan.shutdown" not in received:
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
    await closing()
    await send({"type": "lifespan.shutdown.complete"})
