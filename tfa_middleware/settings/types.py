"""The building blocks of the settings models: the section base, :class:`Secret`, the value types
the file's keys share, and the two errors our own checks raise.

pydantic checks types, required and unknown keys; the checks here give the words users read
(``must start with '/'``), which :mod:`.loader` prints by key path. A check that finds several
problems at once, or one at another key than its own, raises :func:`problems` with key paths
relative to where it runs.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    StrictStr,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

INVALID = "tfa_invalid"
PROBLEMS = "tfa_problems"


class Section(BaseModel):
    """One mapping of the file: immutable once loaded, and a key it does not know is refused,
    because a typo must never silently switch protection off."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Secret(SecretStr):
    """A secret string that shows as ``'**********'`` in ``repr``, ``str``, logs and dumps."""

    def reveal(self) -> str:
        return self.get_secret_value()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return secrets.compare_digest(self.reveal().encode(), other.reveal().encode())

    def __hash__(self) -> int:  # by length only: a hash of the value could be matched against guesses
        return hash(("Secret", len(self.reveal())))


def invalid(message: str) -> PydanticCustomError:
    """The value at hand is wrong, in the words the user reads."""
    return PydanticCustomError(INVALID, "{message}", {"message": message})


def problems(found: Iterable[tuple[str, str]]) -> PydanticCustomError:
    """Problems of one check, each ``(key path relative to the check's place, message)``:
    ``("[1]", ...)`` is an item of the list checked, ``("allow_roles", ...)`` a key below it."""
    return PydanticCustomError(PROBLEMS, "{problems}", {"problems": tuple(found)})


def raise_any(found: list[tuple[str, str]]) -> None:
    if found:
        raise problems(found)


def kind(value: object) -> str:
    """How a value read from YAML is named to the user."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
    return {**names, dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)


def between(low: float, high: float) -> WrapValidator:
    """A number in ``[low, high]``; the message shows the value as it was written."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        number = handler(value)
        if not low <= number <= high:
            raise invalid(f"must be between {low} and {high}, got {value}")
        return number

    return WrapValidator(check)


def _checked(check: Callable[[str], str | None], transform: Callable[[str], str] = str) -> AfterValidator:
    def run(text: str) -> str:
        message = check(text)
        if message:
            raise invalid(message)
        return transform(text)

    return AfterValidator(run)


def _nonempty(text: str) -> str:
    if not text.strip():
        raise invalid("must not be empty")
    return text.strip()


def path_problem(text: str) -> str | None:
    if not text.startswith("/"):
        return "must start with '/'"
    if any(ord(c) < 0x21 or c in "\\?#%" for c in text):
        return "must be a plain path (no spaces, control characters, '\\', '?', '#', '%')"
    segments = text.split("/")
    if "" in segments[1:-1] or "." in segments or ".." in segments:
        return "must not contain '//', '/./' or '/../'"
    return None


def as_prefix(text: str) -> str:
    return text.lower().rstrip("/") or "/"


def inside(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _one_as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _secret_text(value: Any) -> Any:
    return _nonempty(value) if isinstance(value, str) else value


_COOKIE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def sid(prefix: str) -> AfterValidator:
    """Twilio ids: two letters and 32 hexadecimal digits (``AC…``, ``SK…``, ``VA…``)."""
    message = f"must be {prefix} followed by 32 hexadecimal digits"
    return _checked(
        lambda t: None if re.fullmatch(prefix + r"[0-9a-fA-F]{32}", t.strip()) else message, str.strip
    )


NonEmpty = Annotated[StrictStr, AfterValidator(_nonempty)]
StrList = tuple[StrictStr, ...]
OneOrMore = Annotated[StrList, BeforeValidator(_one_as_list)]  # a single string is a list of one
SecretText = Annotated[Secret, BeforeValidator(_secret_text)]
Path = Annotated[StrictStr, _checked(path_problem)]
Prefix = Annotated[StrictStr, _checked(path_problem, as_prefix)]
CookieName = Annotated[
    StrictStr,
    _checked(
        lambda t: (
            None
            if _COOKIE.match(t) and not t.startswith("__")
            else "must be 1-64 letters, digits, '_' or '-' and not start with '__'"
        )
    ),
]
ShopCookieName = Annotated[
    StrictStr, _checked(lambda t: None if _COOKIE.match(t) else "must be 1-64 letters, digits, '_' or '-'")
]
Identifier = Annotated[
    StrictStr, _checked(lambda t: None if t.isidentifier() else "must be a Python attribute name")
]
Dotted = Annotated[
    StrictStr, _checked(lambda t: None if _DOTTED.match(t) else "must look like package.module:function")
]
