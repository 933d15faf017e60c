"""The scope readers: the client's address behind proxies, and one cookie among many."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tfa_middleware.asgi import CookieParser, client_ip, cookie

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
PROXY = ("10.0.0.2", 443)
STRANGER = ("203.0.113.9", 50000)


def scope(client: tuple[str, int] | None, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "client": client, "headers": list(headers)}


def xff(value: str) -> tuple[bytes, bytes]:
    return (b"x-forwarded-for", value.encode("latin-1"))


@pytest.mark.parametrize(
    ("request_scope", "expected"),
    [
        pytest.param(scope(STRANGER), "203.0.113.9", id="direct"),
        pytest.param(scope(STRANGER, xff("198.51.100.7")), "203.0.113.9", id="forged-by-untrusted-peer"),
        pytest.param(scope(PROXY), "10.0.0.2", id="proxy-without-header"),
        pytest.param(scope(PROXY, xff("198.51.100.7")), "198.51.100.7", id="one-hop"),
        pytest.param(
            scope(PROXY, xff("6.6.6.6, 198.51.100.7, 10.0.0.3")),
            "198.51.100.7",
            id="rightmost-untrusted-hop-wins-over-a-prepended-one",
        ),
        pytest.param(scope(PROXY, xff("10.0.0.4, 10.0.0.3")), "10.0.0.2", id="only-trusted-hops"),
        pytest.param(scope(PROXY, xff(" 198.51.100.7 ,, ")), "198.51.100.7", id="blank-entries"),
        pytest.param(scope(PROXY, xff("")), "10.0.0.2", id="empty-header"),
        pytest.param(scope(PROXY, xff("not-an-address")), "10.0.0.2", id="garbage"),
        pytest.param(scope(PROXY, xff("198.51.100.7, <script>")), "10.0.0.2", id="garbage-rightmost"),
        pytest.param(scope(PROXY, xff("198.51.100.7:4711")), "10.0.0.2", id="address-with-port"),
        pytest.param(scope(PROXY, xff("2001:DB8::7")), "2001:db8::7", id="ipv6-normalised"),
        pytest.param(scope(("fd00::1", 443), xff("198.51.100.7")), "198.51.100.7", id="ipv6-proxy"),
        pytest.param(
            scope(("garbage", 1), xff("198.51.100.7")), "garbage", id="unparsable-peer-is-untrusted"
        ),
        pytest.param(scope(None, xff("198.51.100.7")), None, id="no-peer"),
        pytest.param(
            scope(PROXY, xff("6.6.6.6"), xff("198.51.100.7")),
            "198.51.100.7",
            id="second-header-line-added-by-the-proxy",
        ),
    ],
)
def test_client_ip(request_scope: dict[str, Any], expected: str | None) -> None:
    assert client_ip(request_scope, PROXIES) == expected


def test_client_ip_without_trusted_proxies_is_the_peer() -> None:
    assert client_ip(scope(PROXY, xff("198.51.100.7")), ()) == "10.0.0.2"


def cookies(*header_values: str) -> dict[str, Any]:
    return scope(STRANGER, *[(b"cookie", value.encode("latin-1")) for value in header_values])


@pytest.mark.parametrize(
    ("request_scope", "expected"),
    [
        pytest.param(cookies("tfa_admin=abc"), "abc", id="alone"),
        pytest.param(cookies("a=1; tfa_admin=abc; b=2"), "abc", id="among-others"),
        pytest.param(cookies("a=1;tfa_admin=abc"), "abc", id="no-space"),
        pytest.param(cookies("tfa_admin2=nope"), None, id="longer-name"),
        pytest.param(cookies("tfa_admin2=nope; tfa_admin=abc"), "abc", id="longer-name-first"),
        pytest.param(cookies("xtfa_admin=nope; my_tfa_admin=nope"), None, id="suffix-names"),
        pytest.param(cookies("TFA_ADMIN=nope"), None, id="names-are-case-sensitive"),
        pytest.param(cookies("x=tfa_admin=nope"), None, id="name-inside-a-value"),
        pytest.param(cookies("a=1", "b=2; tfa_admin=abc"), "abc", id="second-header"),
        pytest.param(cookies("tfa_admin2=nope", "tfa_admin=abc"), "abc", id="similar-name-in-first-header"),
        pytest.param(cookies("a=1", "b=2"), None, id="absent-from-all-headers"),
        pytest.param(cookies("tfa_admin=a.b=c"), "a.b=c", id="value-with-equals"),
        pytest.param(cookies("tfa_admin="), "", id="empty-value"),
        pytest.param(scope(STRANGER), None, id="no-cookie-header"),
        pytest.param(scope(STRANGER, (b"x-cookie", b"tfa_admin=nope")), None, id="other-header"),
    ],
)
@pytest.mark.parametrize("reader", ["cookie", "parser"], ids=["cookie()", "a-middlewares-parser"])
def test_cookie(request_scope: dict[str, Any], expected: str | None, reader: str) -> None:
    if reader == "parser":
        parser = CookieParser()
        assert parser.read(request_scope, "tfa_admin") == expected
        assert parser.read(request_scope, "tfa_admin") == expected  # again, from its cache
    assert cookie(request_scope, "tfa_admin") == expected
