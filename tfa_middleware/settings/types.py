"""The building blocks of the settings models: the section base, :class:`Secret`, the value types
the keys share, and how our own checks fail: :func:`invalid` for the value at hand,
:func:`raise_any` for problems at key paths below it, both worded by :mod:`.loader`.
"""

from __future__ import annotations

import ipaddress
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
    WrapValidator,
)
from pydantic import ValidatorFunctionWrapHandler as Handler
from pydantic_core import PydanticCustomError

PROBLEMS = "tfa_problems"


class Section(BaseModel):
    """One mapping of the file: immutable once loaded; a key it does not know is refused,
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


def raise_any(found: Iterable[tuple[str, str]]) -> None:
    """``(key path, message)`` pairs: ``"[1]"`` is an item of the list checked, ``"allow_roles"``
    a key below the place checked, ``""`` the place itself."""
    if found := tuple(found):
        raise PydanticCustomError(PROBLEMS, "{problems}", {"problems": found})


def invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError(PROBLEMS, "{problems}", {"problems": (("", message),)})


def kind(value: object) -> str:
    """How a value read from YAML is named to the user."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
    return {**names, dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)


def between(low: float, high: float) -> WrapValidator:
    """A number in ``[low, high]``; the message shows the value as it was written."""

    def run(value: Any, handler: Handler) -> Any:
        if not low <= (number := handler(value)) <= high:
            raise invalid(f"must be between {low} and {high}, got {value}")
        return number

    return WrapValidator(run)


def check(
    ok: Callable[[str], object] | str, message: str, then: Callable[[str], str] = str
) -> AfterValidator:
    """Text for which ``ok`` holds (a pattern: that the whole text matches), as ``then`` makes it."""
    test = re.compile(ok).fullmatch if isinstance(ok, str) else ok

    def run(text: str) -> str:
        if not test(text):
            raise invalid(message)
        return then(text)

    return AfterValidator(run)


def one_as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _stripped(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise invalid("must not be empty")
    return value.strip() if isinstance(value, str) else value


def sid(prefix: str) -> AfterValidator:
    """Twilio ids: two letters and 32 hexadecimal digits (``AC…``, ``SK…``, ``VA…``)."""
    pattern = re.compile(prefix + r"[0-9a-fA-F]{32}")
    message = f"must be {prefix} followed by 32 hexadecimal digits"
    return check(lambda t: pattern.fullmatch(t.strip()), message, str.strip)


NonEmpty = Annotated[StrictStr, BeforeValidator(_stripped)]
StrList = tuple[StrictStr, ...]
OneOrMore = Annotated[StrList, BeforeValidator(one_as_list)]  # a single string is a list of one
SecretText = Annotated[Secret, BeforeValidator(_stripped)]

COOKIE_NAME = r"[A-Za-z0-9_\-]{1,64}"
NOT_A_COOKIE_NAME = "must be 1-64 letters, digits, '_' or '-'"
ShopCookieName = Annotated[StrictStr, check(COOKIE_NAME, NOT_A_COOKIE_NAME)]  # a cookie the shop sets


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    networks = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"item {i}: expected a string, got {kind(item)}")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise invalid(f"{item!r} is not an IP address or network") from None
    return networks


Networks = Annotated[tuple[Network, ...], BeforeValidator(_networks)]  # ["10.0.0.0/8", "::1"]
