"""What the wrapped app routes, when it can tell: a startup check that each ``path_prefix`` covers
something.

A typo in ``path_prefix`` (``/admim``), or an app mounted under ``/shop`` while the prefix says
``/admin``, protects nothing, and no request can reveal it: the middleware never sees a protected
path. A Starlette or FastAPI app lists its routes, so the middleware can compare at start and log
a WARNING naming the key path. Other apps (Django, a plain ASGI callable) list nothing: no check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_MAX_DEPTH = 12  # middleware around middleware around the app: follow `.app` this far


def route_paths(app: Any) -> list[str] | None:
    """Every path template the app routes (Mounts joined with their children), or None when the
    app does not list its routes. A Mount of an app without routes covers everything below it."""
    for _ in range(_MAX_DEPTH):
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            return list(_walk(routes, "", 0))
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _walk(routes: list[Any], base: str, depth: int) -> Iterator[str]:
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            yield base + "/{anything}"  # a route we cannot read (Host, custom): assume it covers all
            continue
        children = getattr(route, "routes", None)
        if children and depth < _MAX_DEPTH:
            yield from _walk(list(children), base + path.rstrip("/"), depth + 1)
        elif children is not None or type(route).__name__ == "Mount":
            yield base + path.rstrip("/") + "/{anything}"
        else:
            yield base + path


def covers(prefix: str, templates: list[str]) -> bool:
    """Whether any route template could serve a path at or below ``prefix`` (case-insensitive)."""
    if prefix == "/":
        return True
    wanted = [s for s in prefix.lower().split("/") if s]
    for template in templates:
        segments = [s for s in template.lower().split("/") if s]
        if _could_match(wanted, segments):
            return True
    return False


def _could_match(wanted: list[str], segments: list[str]) -> bool:
    for i, want in enumerate(wanted):
        if i >= len(segments):
            return False
        segment = segments[i]
        if "{" in segment:
            return True  # a parameter (or a path parameter) may be anything from here on
        if segment != want:
            return False
    return True
