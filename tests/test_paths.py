"""Requirement 1 (no protected route, http or websocket, reachable without a proof; exemptions
cannot smuggle a protected path) and requirement 17 (``next`` stays inside the interface)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.asgi_helpers import Recorder, asgi_request, asgi_websocket
from tests.harness import Harness, config, shop_app
from tfa_middleware import settings_from_mapping
from tfa_middleware.asgi import canonical_path, inside
from tfa_middleware.pages.kit import safe_next

ALICE = {"x-test-user": "alice", "accept": "text/html"}
ADMIN = settings_from_mapping(config(Path("unused"))).interface(
    "admin"
)  # exempt: /admin/login, /admin/static/


def _server_scopes(raw_paths: list[str]) -> list[Any]:
    """Each raw request target as uvicorn hands it on (``path`` percent-decoded) and, where that
    differs, verbatim (a proxy or server that leaves the escapes in ``path``)."""
    cases = []
    for raw in raw_paths:
        cases.append(pytest.param(unquote(raw), raw.encode(), id=f"decoded:{raw}"))
        if unquote(raw) != raw:
            cases.append(pytest.param(raw, raw.encode(), id=f"verbatim:{raw}"))
    return cases


def _is_challenge(response: Any) -> bool:
    location = response.header("location") or ""
    return response.status == 303 and location.startswith("/admin/_2fa/challenge?next=")


@pytest.fixture
async def shop(make_harness: Callable[..., Any]) -> tuple[Harness, Recorder]:
    recorder = Recorder(shop_app())
    return await make_harness(app=recorder), recorder


# ---------------------------------------------------------------------- http paths

SMUGGLED = [
    "/admin/login/../orders",
    "/admin/login/%2e%2e/orders",
    "/admin/login/%2E%2E/orders",
    "/admin/login/%252e%252e/orders",
    "/admin/login/..%2forders",
    "//admin/orders",
    "/admin//orders",
    "/ADMIN/orders",
    "/Admin/Orders/",
    "/admin/./orders",
    "/admin/%2e/orders",
    "/admin/static/../orders",
    "/admin/static/%2e%2e/orders",
    "/admin/login\\..\\orders",
    "/admin/static\\..\\orders",
    "/account/../admin/orders",
    "/admin/login/..",
]


@pytest.mark.parametrize(("path", "raw_path"), _server_scopes(SMUGGLED))
async def test_smuggled_protected_path_is_challenged(
    shop: tuple[Harness, Recorder], path: str, raw_path: bytes
) -> None:
    harness, recorder = shop
    response = await asgi_request(harness.app, path, raw_path=raw_path, headers=ALICE)
    assert _is_challenge(response), (response.status, response.headers, response.body[:200])
    assert recorder.scopes == []


@pytest.mark.parametrize(
    "path",
    [
        "/admin/login",
        "/admin/login/",
        "/ADMIN/LOGIN",
        "/admin/static/app.css",
        "/admin/static/",
        "/admin/static/css/../app.css",
    ],
)
async def test_genuinely_exempt_path_reaches_the_shop(shop: tuple[Harness, Recorder], path: str) -> None:
    harness, recorder = shop
    response = await asgi_request(harness.app, path, headers=ALICE)
    assert recorder.paths == [path]
    assert not _is_challenge(response)


@pytest.mark.parametrize("path", ["/admin/loginx", "/admin/login/orders", "/admin/staticx/app.css", "/admin"])
async def test_near_misses_of_exempt_paths_are_protected(shop: tuple[Harness, Recorder], path: str) -> None:
    harness, recorder = shop
    response = await asgi_request(harness.app, path, headers=ALICE)
    assert _is_challenge(response)
    assert recorder.scopes == []


@pytest.mark.parametrize("path", ["/administrator", "/admin-old/orders", "/adminx", "/", "/accounts"])
async def test_prefix_matches_only_at_a_segment_boundary(shop: tuple[Harness, Recorder], path: str) -> None:
    harness, recorder = shop
    response = await asgi_request(harness.app, path, headers=ALICE)
    assert recorder.paths == [path]
    assert not _is_challenge(response)


async def test_challenge_keeps_the_requested_path_and_query_as_next(shop: tuple[Harness, Recorder]) -> None:
    harness, _ = shop
    response = await asgi_request(harness.app, "/admin/orders", headers=ALICE, query=b"page=2&sort=desc")
    location = urlsplit(response.header("location") or "")
    assert parse_qs(location.query)["next"] == ["/admin/orders?page=2&sort=desc"]


async def test_path_that_climbs_out_of_the_prefix_still_reaches_no_protected_route(
    make_harness: Callable[..., Any],
) -> None:
    """A router that matches the path literally (here ``{name:path}``) serves ``/admin/files/…``
    for ``/admin/files/../../report``; the middleware must not wave it through because its
    canonical form (``/report``) lies outside the prefix."""
    reached: list[str] = []

    async def admin_file(request: Request) -> PlainTextResponse:
        reached.append(request.path_params["name"])
        return PlainTextResponse("admin file")

    app = Starlette(routes=[Route("/admin/files/{name:path}", admin_file)])
    harness = await make_harness(app=app)
    response = await asgi_request(harness.app, "/admin/files/../../report", headers=ALICE)
    assert reached == [], "a route under /admin ran without a proof"
    assert response.body != b"admin file"


async def test_dot_segments_encoded_four_times_do_not_smuggle_into_an_exempt_folder(
    shop: tuple[Harness, Recorder],
) -> None:
    """canonical_path stops decoding after three rounds, leaving ``%2e%2e`` inside /admin/static."""
    harness, recorder = shop
    path = "/admin/static/%2525252e%2525252e/orders"
    response = await asgi_request(harness.app, path, headers=ALICE)
    assert recorder.scopes == []
    assert _is_challenge(response)


async def test_logged_in_user_the_middleware_cannot_identify_is_not_let_through(
    shop: tuple[Harness, Recorder],
) -> None:
    """A user id longer than 255 characters makes the resolver's answer unusable; the shop still
    considers that user logged in, so letting the request through is a bypass (fail closed)."""
    harness, recorder = shop
    headers = {**ALICE, "x-test-user": "u" * 256}
    await asgi_request(harness.app, "/admin/orders", headers=headers)
    assert recorder.scopes == []


# ---------------------------------------------------------------------- canonical_path


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/admin/orders", "/admin/orders"),
        ("/admin/login/../orders", "/admin/orders"),
        ("/admin/login/%2e%2e/orders", "/admin/orders"),
        ("/admin/login/%252e%252e/orders", "/admin/orders"),
        ("/admin/login/%25252E%25252E/orders", "/admin/orders"),
        ("//admin//orders//", "/admin/orders"),
        ("/ADMIN/Orders/", "/admin/orders"),
        ("/admin/./orders/.", "/admin/orders"),
        ("/admin\\orders", "/admin/orders"),
        ("/admin%2forders", "/admin/orders"),
        ("/admin%5c..%5corders", "/orders"),
        ("/../../admin", "/admin"),
        ("/admin/..", "/"),
        ("/", "/"),
        ("", "/"),
        ("/admin/login..", "/admin/login.."),
        ("/admin/.hidden", "/admin/.hidden"),
        ("/administrator", "/administrator"),
    ],
)
def test_canonical_path(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


# ---------------------------------------------------------------------- properties

SEGMENT_WORDS = ["admin", "login", "static", "orders", "app.css", "api", "x", "account"]
SEPARATORS = ["/", "//", "\\", "%2f", "%5c"]


def _encode(text: str, times: int) -> str:
    for _ in range(times):
        text = quote(text, safe="")
    return text


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def disguised(draw: st.DrawFn, max_encoding: int = 3) -> tuple[str, str]:
    """(a path that hides its meaning, the path it really names), built so the answer is known.

    Each real segment may be preceded by a detour (``word/..``) and ``.``/empty segments, have its
    case flipped, and have its dots and separators percent-encoded up to ``max_encoding`` times.
    """
    target = ["admin", *draw(st.lists(st.sampled_from(SEGMENT_WORDS), max_size=3))]
    tokens: list[str] = [draw(st.sampled_from(["", "..", "."]))]
    for segment in target:
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["detour", "dot", "empty"]))
            if kind == "detour":
                tokens += [draw(st.sampled_from(SEGMENT_WORDS)), ".."]
            elif kind == "dot":
                tokens.append(".")
            else:
                tokens.append("")
        tokens.append(segment)
    if draw(st.booleans()):
        tokens.append("")  # trailing slash
    pieces = []
    for token in tokens:
        token = _random_case(draw, token)
        if token in (".", "..") and draw(st.booleans()):
            token = _encode(token.replace(".", "%2e"), draw(st.integers(0, max_encoding - 1)))
        pieces.append(token)
    path = ""
    for piece in pieces:
        separator = draw(st.sampled_from(SEPARATORS))
        if separator.startswith("%"):
            separator = _encode(separator, draw(st.integers(0, max_encoding - 1)))
        path += separator + piece
    return path, "/" + "/".join(target)


PATH_TEXT = st.text(alphabet=st.sampled_from(list("/\\.%25cefAE adminlogstc?#;\x00é")), max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.one_of(PATH_TEXT, st.text(max_size=30), disguised(max_encoding=5).map(lambda pair: pair[0])))
def test_canonical_path_is_idempotent_and_has_no_dot_or_empty_segments(path: str) -> None:
    once = canonical_path(path)
    assert canonical_path(once) == once
    assert once.startswith("/")
    assert "//" not in once
    assert "/./" not in once
    assert not once.endswith("/.")
    assert "/../" not in once
    assert not once.endswith("/..")


@given(disguised())
def test_disguised_paths_canonicalise_to_what_they_name(case: tuple[str, str]) -> None:
    path, target = case
    assert canonical_path(path) == target


def _exempt(target: str) -> bool:
    return target == "/admin/login" or target == "/admin/static" or target.startswith("/admin/static/")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=disguised())
async def test_middleware_never_exempts_a_disguised_protected_path(
    shop: tuple[Harness, Recorder], case: tuple[str, str]
) -> None:
    harness, recorder = shop
    path, target = case
    recorder.scopes.clear()
    response = await asgi_request(harness.app, path, raw_path=path.encode(), headers=ALICE)
    if _exempt(target):
        # A disguised spelling of an exempt path may be challenged (both the literal and the
        # canonical reading must be exempt to skip the check): failing closed is allowed here.
        assert recorder.paths == [path] or (recorder.scopes == [] and response.status == 303)
    else:
        assert recorder.scopes == [], f"{path!r} names {target} but reached the shop"
        assert response.status == 303


# ---------------------------------------------------------------------- websocket


async def test_websocket_without_proof_is_closed_before_the_shop_sees_it(
    shop: tuple[Harness, Recorder],
) -> None:
    harness, recorder = shop
    sent = await asgi_websocket(harness.app, "/admin/ws", headers={"x-test-user": "alice"})
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "second factor required"}]
    assert recorder.scopes == []


@pytest.mark.parametrize("path", ["/admin/login/../ws", "/ADMIN/WS", "/admin/static/..\\ws"])
async def test_smuggled_websocket_path_is_closed(shop: tuple[Harness, Recorder], path: str) -> None:
    harness, recorder = shop
    sent = await asgi_websocket(harness.app, path, headers={"x-test-user": "alice"})
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008
    assert recorder.scopes == []


@pytest.mark.parametrize(("scheme", "cookie_name"), [("ws", "tfa_admin"), ("wss", "__Host-tfa_admin")])
async def test_websocket_with_a_valid_proof_reaches_the_shop_socket(
    harness: Harness, scheme: str, cookie_name: str
) -> None:
    value = await harness.pass_challenge("alice")
    headers = {"x-test-user": "alice", "cookie": f"{cookie_name}={value}"}
    sent = await asgi_websocket(harness.app, "/admin/ws", headers=headers, scheme=scheme)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "shop socket"


async def test_websocket_with_another_users_proof_is_closed(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    headers = {"x-test-user": "bob", "cookie": f"tfa_admin={value}"}
    sent = await asgi_websocket(harness.app, "/admin/ws", headers=headers)
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]


async def test_anonymous_websocket_reaches_the_shop_but_is_not_accepted(
    shop: tuple[Harness, Recorder],
) -> None:
    # The shop decides about a socket with nobody logged in; if it accepts it anyway, the guard
    # closes it before the handshake completes, and nothing the shop sends gets out.
    harness, recorder = shop
    sent = await asgi_websocket(harness.app, "/admin/ws")
    assert recorder.paths == ["/admin/ws"]
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]


# ---------------------------------------------------------------------- next (requirement 17)

HOSTILE_NEXT = [
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "https:evil.com",
    "https://evil.com/admin",
    "HTTPS://evil.com/admin",
    "//evil.com/admin",
    "/admin%0d%0aSet-Cookie:x",
    "/admin\r\nx",
    "/admin/\x00",
    "/\t/evil.com",
    "/admin/%09",
    "/admin/\x7f",
    "javascript:alert(1)",
    " /admin",
    "/%2f%2fevil.com",
    "/%5cevil.com",
    "/admin/../evil",
    "/admin/%2e%2e/evil",
    "/other",
    "/administrator",
    "/admin/_2fa/verify",
    "/admin/_2fa/challenge?next=//evil.com",
    "/ADMIN/_2FA/logout",
    "",
    None,
    "/admin/" + "a" * 2993,
]


@pytest.mark.parametrize("value", HOSTILE_NEXT)
def test_hostile_next_falls_back_to_the_prefix(value: str | None) -> None:
    assert safe_next(value, ADMIN) == "/admin"


@pytest.mark.parametrize(
    "value", ["/admin/orders?page=2", "/admin", "/admin/orders", "/admin/orders#top", "/Admin/Orders"]
)
def test_next_inside_the_prefix_is_kept(value: str) -> None:
    assert safe_next(value, ADMIN) == value


NEXT_TEXT = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.sampled_from(list("/\\.:%0d2aefADMIN_admin?#@ \t\r\n\x00")), max_size=40),
    st.builds(lambda tail: "/admin" + tail, st.text(max_size=40)),
    st.builds(
        lambda tail: "/admin/" + tail, st.text(alphabet=st.sampled_from(list("/\\.%2e5cf_a?")), max_size=30)
    ),
)


@settings(max_examples=500, deadline=None)
@given(NEXT_TEXT)
def test_safe_next_returns_the_input_or_the_prefix_and_always_a_local_path(value: str) -> None:
    result = safe_next(value, ADMIN)
    assert result in (value, "/admin")
    assert result.startswith("/")
    assert not result.startswith("//")
    assert "\\" not in result
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in unquote(result))
    parts = urlsplit(result)
    assert not parts.scheme
    assert not parts.netloc
    path = canonical_path(parts.path)
    assert inside(path, "/admin")
    assert not inside(path, "/admin/_2fa")


@pytest.mark.parametrize(
    ("next_", "location"),
    [("//evil.com", "/admin"), ("https://evil.com/admin", "/admin"), ("/admin/orders", "/admin/orders")],
)
async def test_verify_redirects_only_inside_the_interface(
    harness: Harness, next_: str, location: str
) -> None:
    alice = harness.as_user("alice")
    sent = await harness.send(alice)
    assert sent.status_code == 303
    verified = await harness.verify(alice, await harness.latest_code(), next_=next_)
    assert verified.status_code == 303
    assert "tfa_admin=" in verified.headers["set-cookie"]
    assert verified.headers["location"] == location
