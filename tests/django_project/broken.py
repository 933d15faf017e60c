"""A cache backend whose server is down: every operation raises ``ConnectionError``."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import BaseCache


class DownCache(BaseCache):  # type: ignore[misc]  # Django is untyped here (pyproject)
    def __init__(self, _location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def _down(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("cache server refused the connection")

    get = set = add = delete = touch = has_key = clear = _down
