"""One event loop per process, in a background thread, for what the WSGI middleware cannot do
synchronously: the pages, the rare database look-ups, an async resolver.

Started on first need, not at construction: gunicorn imports the app in the master (``--preload``)
or in each worker, and a loop thread started before ``fork`` does not exist in the child (threads
are not copied). So the loop remembers the process that started it; in a forked child it is
started anew, and the ``on_fork`` callback lets the owner drop what the parent's loop held (the
database pool's connections). A hook registered with :func:`os.register_at_fork` resets the lock
in the child, in case a thread of the parent held it at the moment of the fork.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.types import Message, Receive, Send

T = TypeVar("T")


class LoopThread:
    """``run(coroutine)`` from any thread: the coroutine runs on this process's loop, the caller
    waits for its result (or its exception)."""

    def __init__(self, on_fork: Callable[[], object] | None = None) -> None:
        self._on_fork = on_fork
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_after_fork(me))

    def run(self, awaitable: Awaitable[T]) -> T:
        loop = self._loop if self._pid == os.getpid() else None
        if loop is None:
            loop = self._start()
        if self._thread is threading.current_thread():
            raise RuntimeError("LoopThread.run() called on its own loop: that would wait forever")
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop).result()

    @property
    def started(self) -> bool:
        """Whether this process's loop is running."""
        return self._loop is not None and self._pid == os.getpid()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            pid = os.getpid()
            if self._loop is not None and self._pid == pid:
                return self._loop  # another thread started it meanwhile
            if self._pid and self._pid != pid and self._on_fork is not None:
                self._on_fork()  # what the parent's loop held is dead here
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, ready), name="tfa-middleware-loop", daemon=True
            )
            thread.start()
            ready.wait()
            self._loop, self._thread, self._pid = loop, thread, pid
            return loop

    def stop(self) -> None:
        """Stop this process's loop (after ``run`` of whatever must finish first, e.g. closing)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():
                return
            self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    def _forked(self) -> None:
        # In the child, right after fork, before any other thread exists: start from scratch.
        self._lock = threading.Lock()
        self._loop = self._thread = None


def _reset_after_fork(ref: weakref.ref[LoopThread]) -> None:
    loop_thread = ref()
    if loop_thread is not None and loop_thread._pid:
        loop_thread._forked()  # _pid stays the parent's: _start calls on_fork


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


@dataclass
class Collected:
    """An ASGI app's answer to one HTTP request, whole (the pages answer small pages)."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


async def collect(call: Callable[[Receive, Send], Awaitable[None]], body: bytes) -> Collected:
    """Run ``call(receive, send)`` with ``body`` as the whole request body; return its answer."""
    out = Collected()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}  # the request is over: nothing more will come
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    await call(receive, send)
    return out
