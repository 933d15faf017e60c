"""YAML → :class:`~.model.Settings`, and pydantic's errors → the lines users read.

Before validation, ``${NAME}`` and ``${NAME:-default}`` are replaced from the environment (so
secrets stay there) and a key given as null counts as not given. pydantic then reports every
problem at once; each becomes ``key.path: message`` in the project's own words, the same texts
the hand-written validation used (``tests/test_settings.py`` holds them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .interfaces import IDENTITY_SOURCES, NAME_KEY, SOURCE_MODELS, InterfaceSettings, ManageSettings
from .model import Settings
from .types import PROBLEMS, kind

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPES = {"bool_type": "true or false", "int_type": "a whole number", "float_type": "a number"}
_TYPES |= {"string_type": "a string", "tuple_type": "a list", "list_type": "a list"}
_TYPES |= dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a mapping")
IDENTITY_REQUIRED = (
    "is required, e.g. {from: starlette_session_cookie, cookie: session, "
    "secret_key: ${SHOP_SECRET}, key: user_id}"
)


def load_settings(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a YAML settings file; raise :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from None
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text"], source) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{where}{problem}"], source) from None
    return settings_from_mapping(data, environ=environ, source=source)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping.

    PyYAML keeps the last of two equal keys; two ``admin:`` sections would silently drop the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one section", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def settings_from_mapping(
    data: object, environ: Mapping[str, str] | None = None, source: str | None = None
) -> Settings:
    """Validate already-parsed settings (a dict shaped like the YAML file)."""
    found: list[str] = []
    data = _prepare(data, "", os.environ if environ is None else environ, found)
    if not isinstance(data, dict):
        if data is not None:
            found.append(f"<root>: expected a mapping, got {kind(data)}")
        data = {}
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        found += [line for error in exc.errors(include_url=False) for line in explain(error)]
    if found:
        raise ConfigError(found, source)
    settings._source = source
    return settings


def _prepare(value: object, path: str, env: Mapping[str, str], found: list[str]) -> object:
    """``${VAR}`` replaced in every string; a key given as null dropped, as not given (an
    interface given as null is an empty one, so that it is reported, not lost)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if env.get(name):
                return env[name]
            if default is not None:
                return default
            found.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_PATTERN.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _prepare({} if v is None else v, _join(path, str(k)), env, found)
            for k, v in value.items()
            if v is not None or path == "interfaces"
        }
    if isinstance(value, list):
        return [_prepare(v, f"{path}[{i}]", env, found) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}{key}" if key.startswith("[") or not path else f"{path}.{key}"


def explain(error: ErrorDetails) -> list[str]:
    """One pydantic error as ``key.path: message`` lines (a check of ours may carry several)."""
    loc, kind_, ctx = error["loc"], error["type"], error.get("ctx") or {}
    if kind_ == "default_factory_not_called":  # a key it depends on is wrong, and reported
        return []
    under_identity = len(loc) > 3 and loc[0] == "interfaces" and loc[2] == "identity"
    tag = str(loc[3]) if under_identity else None
    keys = loc[:3] + loc[4:] if under_identity else loc
    if keys and isinstance(keys[-1], int) and kind_ != PROBLEMS:
        return [f"{_path(keys[:-1])}: item {keys[-1]}: {_message(error, keys, tag)}"]
    if kind_ == PROBLEMS:
        base = _path(keys) if keys else ""
        return [f"{_join(base, at) or '<root>'}: {message}" for at, message in ctx["problems"]]
    if kind_ in ("union_tag_invalid", "union_tag_not_found"):
        return [_tag_problem(error, _path(keys))]
    if keys and keys[-1] == "[key]":
        return [f"{_path(keys[:-1])}: interface names are lower-case letters, digits and '_'"]
    return [f"{_path(keys)}: {_message(error, keys, tag)}"]


def _path(keys: tuple[int | str, ...]) -> str:
    """``interfaces.admin.step_up[2].methods``: a list's item by its index in brackets."""
    text = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
    return text or "<root>"


def _message(error: ErrorDetails, keys: tuple[int | str, ...], tag: str | None) -> str:
    kind_, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind_ == "missing":
        if keys == ("interfaces",):
            return "is required (at least one interface, e.g. admin)"
        return IDENTITY_REQUIRED if keys[-1] == "identity" and len(keys) == 3 else "is required"
    if kind_ == "extra_forbidden":
        if tag in SOURCE_MODELS:
            expected = [f.alias or n for n, f in SOURCE_MODELS[tag].model_fields.items() if n != "source"]
            return f"is not used with from: {tag} (expected: {', '.join(expected)})"
        return f"unknown key (expected one of: {', '.join(_known_keys(keys[:-1]))})"
    if kind_ == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(options)}, got {value!r}"
    if kind_ == "dict_type" and keys == ("interfaces",):
        return f"expected a mapping of interface names, got {kind(value)}"
    if kind_ in _TYPES:
        return f"expected {_TYPES[kind_]}, got {kind(value)}"
    return str(error["msg"])  # not one the file can cause; pydantic's own words, then


def _known_keys(section: tuple[int | str, ...]) -> list[str]:
    model: Any = Settings
    if section and section[0] == "interfaces":
        model = InterfaceSettings if len(section) == 2 else ManageSettings
    elif section:
        model = Settings.model_fields[str(section[0])].annotation
    return sorted(f.alias or key for key, f in model.model_fields.items() if f.validation_alias != NAME_KEY)


def _tag_problem(error: ErrorDetails, path: str) -> str:
    given = error["input"]
    if not isinstance(given, dict) or not given:
        return f"{path}: {IDENTITY_REQUIRED}"
    if "from" not in given:
        return f"{path}.from: is required"
    return f"{path}.from: must be one of {', '.join(IDENTITY_SOURCES)}, got {given['from']!r}"
