"""The shop's own callables named in the settings (``on_event``, a ``callable`` identity
resolver), imported by their ``module:attribute`` path. A leaf: the service and the identity
resolvers both use it, and neither should import the other for it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import ConfigError


def import_callable(path: str, where: str) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # any failure while importing the shop's module is a config problem
        raise ConfigError([f"{where}: cannot import {path!r}: {type(exc).__name__}: {exc}"]) from None
    if not callable(target):
        raise ConfigError([f"{where}: {path!r} is not callable"])
    return target  # type: ignore[no-any-return]
