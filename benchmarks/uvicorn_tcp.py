"""uvicorn's own command line, with one fix: the listening socket that ``--workers N`` binds is marked as
TCP, so that the workers' connections get TCP_NODELAY as a single worker's do.

uvicorn creates that socket with ``proto`` 0; accepted connections inherit it, and asyncio only sets
TCP_NODELAY on sockets that say IPPROTO_TCP. Nagle's algorithm then holds each response's body until
the client's delayed ACK, about 40 ms on Linux, for every keep-alive request: Kludex/uvicorn#3149,
open at the time of writing. Without this, a 2-worker run measures that timer, not the app.

    python -m benchmarks.uvicorn_tcp --factory demo_app.app:create_app --workers 2 --port 8000
"""

from __future__ import annotations

import socket

import uvicorn.config
import uvicorn.main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        inheritable = sock.get_inheritable()
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(inheritable)
    return sock


uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    uvicorn.main.main()
