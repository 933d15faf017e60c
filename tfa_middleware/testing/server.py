"""Run an ASGI app (a fake provider) as a real HTTP server on the loopback interface.

``serve`` runs it in a background thread for the length of a ``with`` block (tests);
``run`` runs it in the foreground until Ctrl-C (``tfa-middleware fake-provider``). Both need
uvicorn, which the ``demo`` and ``dev`` extras install.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

if TYPE_CHECKING:
    import uvicorn


def _server(
    app: ASGIApp, host: str, port: int, log_level: str, on_ready: Callable[[str], None]
) -> uvicorn.Server:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - the dev and demo extras have it
        raise RuntimeError(
            "running a fake provider server needs uvicorn: pip install 'tfa-middleware[demo]'"
        ) from None

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()
                on_ready(f"http://{host}:{bound[1]}")

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # an Authy verify URL holds the code
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=2,
    )
    return Server(config)


@contextmanager
def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "critical"
) -> Iterator[str]:
    """Serve ``app`` on a real socket in a background thread; yield its base URL.

    ``port=0`` picks a free port. The server stops (and the thread ends) when the block exits.
    """
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    server = _server(app, host, port, log_level, on_ready)

    def run_server() -> None:
        with suppress(SystemExit):  # uvicorn exits when it cannot bind; the wait below reports it
            server.run()

    thread = threading.Thread(target=run_server, name=f"fake-server-{host}:{port}", daemon=True)
    thread.start()
    try:
        # Either the server is up, or its thread ended (uvicorn exits when it cannot bind).
        while not ready.wait(0.05):
            if not thread.is_alive():
                raise RuntimeError(f"the server could not start on {host}:{port}")
        yield urls[0]
    finally:
        server.should_exit = True
        thread.join(10)


def run(
    app: ASGIApp, *, host: str, port: int, on_ready: Callable[[str], None], log_level: str = "info"
) -> None:
    """Serve ``app`` in the foreground until interrupted."""
    _server(app, host, port, log_level, on_ready).run()
