"""A bounded map for the caches on the hot path: the oldest entry goes when it is full.

Why not :func:`functools.lru_cache`: it caches a function's results in the function itself, so
one module-level cache would hold every app's request data (cookies, session ids) for the whole
process; it takes a lock on every call; and its key is every argument, where our callers choose
the key (a raw header, a path) and decide what is worth keeping (only short paths, only verified
proofs). Each cache here belongs to the object that created it and is read without a lock: the
ASGI middleware runs on one event loop thread; the WSGI middleware's requests may run in several
threads (gunicorn's gthread), where each dictionary operation is atomic and two threads evicting at
once is tolerated in ``put``.

First in, first out rather than least recently used: a hit costs one dictionary look-up and moves
nothing, and a flood of made-up keys can only push out the oldest entries, never grow the map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``limit`` entries; putting a new key into a full cache drops the oldest one.
    The callers decide what is worth remembering::

        routes: BoundedCache[str, Route] = BoundedCache(4096)
        route = routes.get(path)
        if route is None:
            routes.put(path, route := work_out(path))
    """

    __slots__ = ("_items", "get", "limit")

    get: Callable[[K], V | None]
    """The value for a key, or None. The dictionary's own ``get``: a hit runs no Python code."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a cache holds at least one entry (limit={limit})")
        self.limit = limit
        self._items: dict[K, V] = {}
        self.get = self._items.get

    @property
    def mapping(self) -> Mapping[K, V]:
        """The entries, read-only: ``mapping.get(key)`` is the fastest look-up there is, for a
        caller on the hot path that keeps it (the dictionary itself, not a copy)."""
        return self._items

    def put(self, key: K, value: V) -> None:
        items = self._items
        if len(items) >= self.limit and key not in items:
            # Another thread may evict or insert meanwhile (WSGI gthread): one entry over is harmless.
            with suppress(KeyError, RuntimeError, StopIteration):
                del items[next(iter(items))]
        items[key] = value

    def pop(self, key: K) -> V | None:
        """Forget ``key`` (its value, or None when it was not there)."""
        return self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
