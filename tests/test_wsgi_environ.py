"""The WSGI middleware's parts: the scope built from the environ (the headers a WSGI server
passes on, read lazily; the cookies as the ASGI reader reads them), the database failing closed,
and many threads at once (gunicorn's gthread workers)."""

from __future__ import annotations

import logging
import string
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wsgi_harness import WSGIHarness
from tfa_middleware import StoreUnavailable
from tfa_middleware.asgi import CookieParser
from tfa_middleware.wsgi.environ import (
    EnvironCookies,
    LazyHeaders,
    complete,
    http_scope,
    light_scope,
    read_body,
)

ENVIRON = {
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "/shop",
    "PATH_INFO": "/admin/orders",
    "QUERY_STRING": "page=2",
    "SERVER_PROTOCOL": "HTTP/1.0",
    "SERVER_NAME": "shop.test",
    "SERVER_PORT": "8443",
    "REMOTE_ADDR": "203.0.113.7",
    "REMOTE_PORT": "50123",
    "CONTENT_TYPE": "application/x-www-form-urlencoded",
    "CONTENT_LENGTH": "7",
    "HTTP_HOST": "shop.test",
    "HTTP_X_REMOTE_USER": "alice",
    "HTTP_COOKIE": "a=1; session=abc",
    "wsgi.url_scheme": "https",
}


def test_the_scope_of_a_wsgi_request() -> None:
    scope = http_scope(ENVIRON, "/admin/orders", "/shop")
    assert {k: scope[k] for k in ("type", "method", "scheme", "path", "root_path", "query_string")} == {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "path": "/shop/admin/orders",
        "root_path": "/shop",
        "query_string": b"page=2",
    }
    assert scope["http_version"] == "1.0"
    assert scope["client"] == ("203.0.113.7", 50123)
    assert scope["server"] == ("shop.test", 8443)
    assert scope["wsgi.environ"] is ENVIRON
    assert dict(scope["headers"]) == {
        b"host": b"shop.test",
        b"x-remote-user": b"alice",
        b"cookie": b"a=1; session=abc",
        b"content-type": b"application/x-www-form-urlencoded",
        b"content-length": b"7",
    }


def test_the_light_scope_is_the_scope_less_the_rest_and_completes_to_it() -> None:
    light = light_scope(ENVIRON, "/admin/orders", "/shop")
    full = http_scope(ENVIRON, "/admin/orders", "/shop")
    assert set(light) == {"type", "method", "scheme", "path", "root_path", "headers", "wsgi.environ"}
    assert {k: v for k, v in full.items() if k in light} == light
    assert complete(light) is light
    assert light == full
    again = dict(light)
    assert complete(light) == again  # completing twice changes nothing


def test_headers_are_built_once_and_only_when_read() -> None:
    headers = LazyHeaders(ENVIRON)
    assert headers._list is None
    assert len(headers) == 5
    built = headers._list
    assert headers[0] == (b"host", b"shop.test")
    assert list(headers) == built
    assert headers == built
    assert (b"x-remote-user", b"alice") in headers
    assert headers._list is built


def test_no_client_without_remote_addr() -> None:
    scope = http_scope({"REQUEST_METHOD": "GET"}, "/", "")
    assert scope["client"] is None
    assert scope["scheme"] == "http"
    assert list(scope["headers"]) == []


_NAME = st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=12).filter(
    lambda n: n.strip("-") == n and "--" not in n and n not in ("content-type", "content-length")
)
_VALUE = (
    st.text(alphabet=string.ascii_letters + string.digits + " ;=,./:", min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_NAME, _VALUE, max_size=8))
def test_the_headers_are_what_the_client_sent(sent: dict[str, str]) -> None:
    # Through a WSGI transport (its CGI names) back to ASGI's lower-case pairs.
    seen: list[Any] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(http_scope(environ, environ["PATH_INFO"], environ["SCRIPT_NAME"]))
        start_response("204 No Content", [])
        return [b""]

    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://shop.test") as client:
        client.get("/", headers=sent)
    headers = dict(seen[0]["headers"])
    for name, value in sent.items():
        assert headers[name.encode()] == value.encode()


@pytest.mark.parametrize(
    "header",
    [
        "session=abc",
        "a=1; session=abc",
        'session="abc"',
        "session = abc ; b=2",
        "session=abc; session=def",
        "x=1",
    ],
)
def test_cookies_from_the_environ_read_as_the_asgi_reader_reads_them(header: str) -> None:
    scope = http_scope({"REQUEST_METHOD": "GET", "HTTP_COOKIE": header}, "/", "")
    asgi = {"type": "http", "headers": [(b"cookie", header.encode())]}
    assert EnvironCookies().read(scope, "session") == CookieParser().read(asgi, "session")
    assert EnvironCookies().read(asgi, "session") == CookieParser().read(asgi, "session")


def test_the_body_is_read_up_to_one_byte_past_the_limit() -> None:
    import io

    def environ(body: bytes, **extra: str) -> dict[str, Any]:
        return {"wsgi.input": io.BytesIO(body), **extra}

    assert read_body(environ(b"a=1&b=2", CONTENT_LENGTH="7"), 100) == b"a=1&b=2"
    assert read_body(environ(b"x" * 50, CONTENT_LENGTH="50"), 10) == b"x" * 11
    assert read_body(environ(b"a=1"), 100) == b""  # no length, no end: never wait on the stream
    assert read_body(environ(b"a=1", **{"wsgi.input_terminated": "1"}), 100) == b"a=1"


def test_the_database_down_with_nothing_cached_is_the_503_page(
    wsgi: WSGIHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice = wsgi.as_user("alice")
    wsgi.pass_challenge(alice)

    async def down(*_: Any) -> Any:
        raise StoreUnavailable("the database is not answering")

    monkeypatch.setattr(wsgi.service, "revocations", down)
    wsgi.app._proofs.generations.clear()
    with caplog.at_level(logging.ERROR, logger="tfa_middleware"):
        response = wsgi.client.get("/admin/orders", headers=alice)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert "cannot check revocation for admin" in caplog.text


def test_many_threads_at_once(wsgi: WSGIHarness) -> None:
    # gthread workers call the middleware from several threads: the hot path, the pages (on the
    # loop) and the guard at the same time, each answer right.
    alice = wsgi.as_user("alice")
    wsgi.pass_challenge(alice)
    cookies = dict(wsgi.client.cookies)

    def one(i: int) -> tuple[int, int, int]:
        with wsgi.browser() as client:
            client.cookies.update(cookies)
            orders = client.get("/admin/orders", headers=alice).status_code
            page = client.get("/admin/_2fa/challenge", headers=wsgi.as_user("bob")).status_code
            nobody = client.get(f"/admin/status/{200 + i % 2}", headers={"cookie": ""}).status_code
        return orders, page, nobody

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(40)))
    assert set(answers) == {(200, 200, 403)}


def test_a_non_ascii_path_is_matched_as_the_shop_reads_it(make_wsgi: Any) -> None:
    # PATH_INFO holds the path's bytes as latin-1 (PEP 3333); Werkzeug and Django read UTF-8.
    from wsgiref.util import setup_testing_defaults

    h: WSGIHarness = make_wsgi(
        interfaces={
            "admin": {
                "path_prefix": "/admin",
                "exempt": ["/admin/café"],
                "identity": {"from": "callable", "path": "tests.harness:header_resolver"},
            }
        }
    )

    def status(path_bytes: bytes) -> str:
        environ: dict[str, Any] = {"PATH_INFO": path_bytes.decode("latin-1")}
        setup_testing_defaults(environ)
        seen: list[str] = []
        body = b"".join(h.app(environ, lambda s, _h, _e=None: seen.append(s)))  # type: ignore[arg-type]
        assert body
        return seen[0][:3]

    for _ in range(2):  # the second time from the route cache
        assert status("/admin/café".encode()) == "200"  # exempt, in UTF-8
        assert status("/admin/caf\xe9".encode("latin-1")) == "403"  # another path to the shop: guarded
