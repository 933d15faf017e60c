"""The challenge pages as a browser (or an attacker's page) meets them: headers, CSRF, methods, forms."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.harness import ADMIN_PHONE, Harness, snapshot
from tfa_middleware.store import outbox as outbox_rows

STYLESHEET = Path(__file__).parent.parent / "tfa_middleware" / "static" / "tfa.css"
PAGES = ("send", "verify", "enroll", "logout")
PREFIXES = ("/admin", "/account")
COOKIE = {"/admin": "tfa_admin", "/account": "tfa_customer"}


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


def assert_no_traceback(response: httpx.Response) -> None:
    assert response.status_code < 500
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


async def post_form(h: Harness, url: str, form: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    """POST like a browser's form does, even with no fields: urlencoded, with its content type."""
    headers = {**headers, "content-type": "application/x-www-form-urlencoded"}
    return await h.client.post(url, content=urlencode(form).encode(), headers=headers)


# ---------------------------------------------------------------------- req 18: security headers


async def _challenge(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))


async def _challenge_customer(h: Harness) -> httpx.Response:
    return await h.client.get("/account/_2fa/challenge", headers=h.as_user("alice"))


async def _challenge_after_send(h: Harness) -> httpx.Response:
    await h.send(h.as_user("alice"))
    return await h.client.get("/admin/_2fa/challenge?sent=1", headers=h.as_user("alice"))


async def _wrong_code_page(h: Harness) -> httpx.Response:
    return await h.verify(h.as_user("alice"), "000000")


async def _enroll(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/enroll", headers=h.as_user("vendor"))


async def _logout_page(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/logout", headers=h.as_user("alice"))


async def _enroll_invalid_number(h: Harness) -> httpx.Response:
    vendor = h.as_user("vendor")
    form = {"csrf_token": await h.csrf(vendor), "country_code": "1", "phone": "abc"}
    return await h.client.post("/admin/_2fa/enroll", data=form, headers=vendor)


async def _not_found(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/nope", headers=h.as_user("alice"))


async def _csrf_refused(h: Harness) -> httpx.Response:
    return await h.client.post("/admin/_2fa/send", data={"csrf_token": "x"}, headers=h.as_user("alice"))


async def _cross_site_refused(h: Harness) -> httpx.Response:
    headers = {**h.as_user("alice"), "origin": "http://evil.test"}
    return await h.client.post("/admin/_2fa/send", data={}, headers=headers)


async def _bad_form(h: Harness) -> httpx.Response:
    return await h.client.post("/admin/_2fa/send", content=b"{}", headers=h.as_user("alice"))


async def _too_large(h: Harness) -> httpx.Response:
    return await h.client.post("/admin/_2fa/send", data={"x": "y" * 20_000}, headers=h.as_user("alice"))


async def _method_not_allowed(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/send", headers=h.as_user("alice"))


async def _redirect_to_enroll(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/challenge", headers=h.as_user("vendor"))


async def _redirect_to_challenge(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/enroll", headers=h.as_user("alice"))


async def _redirect_after_send(h: Harness) -> httpx.Response:
    return await h.send(h.as_user("alice"))


async def _redirect_after_verify(h: Harness) -> httpx.Response:
    await h.send(h.as_user("alice"))
    return await h.verify(h.as_user("alice"), await h.latest_code())


async def _redirect_with_proof(h: Harness) -> httpx.Response:
    await h.pass_challenge("alice")
    return await h.client.get("/admin/_2fa/challenge?next=/admin/orders", headers=h.as_user("alice"))


async def _redirect_after_logout(h: Harness) -> httpx.Response:
    alice = h.as_user("alice")
    token = await h.csrf(alice)
    await h.pass_challenge("alice")
    return await h.client.post("/admin/_2fa/logout", data={"csrf_token": token}, headers=alice)


async def _redirect_not_logged_in(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/_2fa/challenge")


async def _middleware_redirect(h: Harness) -> httpx.Response:
    return await h.client.get("/admin/orders", headers=h.as_user("alice"))


async def _middleware_redirect_post(h: Harness) -> httpx.Response:
    return await h.client.post("/admin/orders", headers=h.as_user("alice"))


async def _middleware_401(h: Harness) -> httpx.Response:
    return await h.client.get(
        "/admin/api/orders", headers={**h.as_user("alice"), "accept": "application/json"}
    )


HEADER_CASES: dict[str, tuple[Callable[[Harness], Awaitable[httpx.Response]], int]] = {
    "challenge": (_challenge, 200),
    "challenge-customer": (_challenge_customer, 200),
    "challenge-sent": (_challenge_after_send, 200),
    "challenge-wrong-code": (_wrong_code_page, 400),
    "enroll": (_enroll, 200),
    "logout-page": (_logout_page, 200),
    "enroll-invalid-number": (_enroll_invalid_number, 400),
    "message-404": (_not_found, 404),
    "message-403-csrf": (_csrf_refused, 403),
    "message-403-cross-site": (_cross_site_refused, 403),
    "message-400-form": (_bad_form, 400),
    "message-413": (_too_large, 413),
    "405": (_method_not_allowed, 405),
    "redirect-to-enroll": (_redirect_to_enroll, 303),
    "redirect-to-challenge": (_redirect_to_challenge, 303),
    "redirect-after-send": (_redirect_after_send, 303),
    "redirect-after-verify": (_redirect_after_verify, 303),
    "redirect-with-proof": (_redirect_with_proof, 303),
    "redirect-after-logout": (_redirect_after_logout, 303),
    "redirect-not-logged-in": (_redirect_not_logged_in, 303),
    "middleware-303": (_middleware_redirect, 303),
    "middleware-303-post": (_middleware_redirect_post, 303),
    "middleware-401": (_middleware_401, 401),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
async def test_security_headers(harness: Harness, case: str) -> None:
    make_response, status = HEADER_CASES[case]
    response = await make_response(harness)
    assert response.status_code == status, response.text[:300]
    assert_security_headers(response)
    assert_no_traceback(response)


async def test_the_stylesheet_is_served_without_login(harness: Harness) -> None:
    for prefix in PREFIXES:
        response = await harness.client.get(f"{prefix}/_2fa/static/tfa.css")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/css")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == STYLESHEET.read_bytes()


# ---------------------------------------------------------------------- req 16: CSRF on every POST


@dataclass
class Post:
    """One POST page, ready to send: who sends it, what (without token) and how to see it worked."""

    url: str
    headers: dict[str, str]
    form: dict[str, str]
    token: str  # a valid token for this user, interface and session
    ok_status: int


async def prepare(h: Harness, page: str, prefix: str, session: str | None = None) -> Post:
    """Set the user up so that the POST would change something if it got through."""
    pages = f"{prefix}/_2fa"
    if page == "enroll":
        user = h.as_user("vendor", session)
        token = await h.csrf(user, f"{pages}/challenge")
        return Post(f"{pages}/enroll", user, {"country_code": "1", "phone": "2015550199"}, token, 303)
    user = h.as_user("alice", session)
    token = await h.csrf(user, f"{pages}/challenge")
    if page == "send":
        return Post(f"{pages}/send", user, {}, token, 303)
    await h.send(user, prefix)
    code = await h.latest_code()
    if page == "verify":
        return Post(f"{pages}/verify?next={prefix}/orders", user, {"code": code}, token, 303)
    assert (await h.verify(user, code, prefix)).status_code == 303  # logged in: logout has a cookie to drop
    return Post(f"{pages}/logout", user, {}, token, 303)


async def other_token(h: Harness, kind: str, post: Post, prefix: str) -> str | None:
    other_prefix = "/account" if prefix == "/admin" else "/admin"
    if kind == "missing":
        return None
    if kind == "empty":
        return ""
    if kind == "garbage":
        return "not-a-token"
    if kind == "tampered":  # a character inside the signature (the last one may be base64 padding bits)
        i = len(post.token) - 10
        return post.token[:i] + ("A" if post.token[i] != "A" else "B") + post.token[i + 1 :]
    if kind == "other-user":
        return await h.csrf(h.as_user("bob"), f"{prefix}/_2fa/challenge")
    if kind == "other-session":
        return await h.csrf(
            h.as_user(post.headers["x-test-user"], "another-session"), f"{prefix}/_2fa/challenge"
        )
    if kind == "other-interface":
        return await h.csrf(h.as_user(post.headers["x-test-user"]), f"{other_prefix}/_2fa/challenge")
    if kind == "oversized":
        return post.token + "x" * 300
    raise AssertionError(kind)


async def assert_refused(h: Harness, response: httpx.Response, before: tuple[Any, ...]) -> None:
    assert response.status_code == 403, response.text[:300]
    assert "set-cookie" not in response.headers
    assert_security_headers(response)
    assert await snapshot(h) == before


TOKEN_KINDS = [
    "missing",
    "empty",
    "garbage",
    "tampered",
    "other-user",
    "other-session",
    "other-interface",
    "oversized",
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("kind", TOKEN_KINDS)
async def test_a_post_without_the_right_csrf_token_is_refused(
    harness: Harness, page: str, prefix: str, kind: str
) -> None:
    post = await prepare(harness, page, prefix)
    token = await other_token(harness, kind, post, prefix)
    assert token != post.token
    before = await snapshot(harness)
    form = post.form if token is None else {**post.form, "csrf_token": token}

    response = await post_form(harness, post.url, form, post.headers)

    await assert_refused(harness, response, before)
    assert "This form has expired" in response.text
    # The very same request with the right token goes through: the token was the only thing wrong.
    ok = await post_form(harness, post.url, {**post.form, "csrf_token": post.token}, post.headers)
    assert ok.status_code == post.ok_status


CROSS_SITE = {
    "sec-fetch-site-cross-site": {"sec-fetch-site": "cross-site"},
    "sec-fetch-site-same-site": {"sec-fetch-site": "same-site"},  # a sibling subdomain is not us either
    "foreign-origin": {"origin": "http://evil.test"},
    "other-scheme": {"origin": "https://shop.test"},
    "other-port": {"origin": "http://shop.test:8080"},
    "suffix-domain": {"origin": "http://shop.test.evil.test"},
    "both": {"sec-fetch-site": "cross-site", "origin": "http://shop.test"},
}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("case", list(CROSS_SITE))
async def test_a_cross_site_post_is_refused_even_with_a_valid_token(
    harness: Harness, page: str, prefix: str, case: str
) -> None:
    post = await prepare(harness, page, prefix)
    before = await snapshot(harness)
    form = {**post.form, "csrf_token": post.token}

    response = await post_form(harness, post.url, form, {**post.headers, **CROSS_SITE[case]})

    await assert_refused(harness, response, before)


SAME_SITE = {
    "same-origin": {"origin": "http://shop.test"},
    "fetch-same-origin": {"sec-fetch-site": "same-origin", "origin": "http://shop.test"},
    "fetch-none": {"sec-fetch-site": "none"},
    # Under Referrer-Policy: no-referrer a browser's own same-origin form sends Origin: null.
    "null-origin": {"origin": "null"},
    "no-hints": {},
}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("case", list(SAME_SITE))
async def test_a_same_origin_post_with_the_token_goes_through(
    harness: Harness, page: str, prefix: str, case: str
) -> None:
    post = await prepare(harness, page, prefix)
    before = await snapshot(harness)
    form = {**post.form, "csrf_token": post.token}

    response = await post_form(harness, post.url, form, {**post.headers, **SAME_SITE[case]})

    assert response.status_code == post.ok_status, response.text[:300]
    if page == "logout":
        assert f'{COOKIE[prefix]}=""' in response.headers["set-cookie"]
        assert (await harness.client.get(f"{prefix}/orders", headers=post.headers)).status_code == 303
    else:
        assert await snapshot(harness) != before
    if page == "verify":
        assert response.headers["location"] == f"{prefix}/orders"
        assert (await harness.client.get(f"{prefix}/orders", headers=post.headers)).status_code == 200


async def test_a_token_is_bound_to_the_shop_session(harness: Harness) -> None:
    post = await prepare(harness, "send", "/admin", session="session-1")
    before = await snapshot(harness)
    other = harness.as_user("alice", "session-2")
    response = await harness.client.post(post.url, data={"csrf_token": post.token}, headers=other)
    await assert_refused(harness, response, before)
    assert (
        await harness.client.post(post.url, data={"csrf_token": post.token}, headers=post.headers)
    ).status_code == 303


# ---------------------------------------------------------------------- req 16: a GET changes nothing


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(("page", "status"), [("send", 405), ("verify", 405), ("logout", 200)])
async def test_get_on_a_post_page_changes_nothing(
    harness: Harness, page: str, status: int, method: str
) -> None:
    """send and verify have no GET; logout's GET is only a confirmation page with the POST form."""
    alice = harness.as_user("alice")
    token = await harness.csrf(alice)  # read before logging in: with a proof the challenge page redirects
    await harness.pass_challenge("alice")
    assert (await post_form(harness, "/admin/_2fa/send", {"csrf_token": token}, alice)).status_code == 303
    code = await harness.latest_code()
    before = await snapshot(harness)

    response = await harness.client.request(
        method, f"/admin/_2fa/{page}?csrf_token={token}&code={code}&channel=sms", headers=alice
    )

    assert response.status_code == status
    assert "set-cookie" not in response.headers
    assert await snapshot(harness) == before
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200
    if page == "logout" and method == "GET":
        assert 'method="post"' in response.text
        assert 'name="csrf_token"' in response.text


@pytest.mark.parametrize(
    ("user", "url"),
    [
        ("alice", "/admin/_2fa/challenge"),
        ("alice", "/admin/_2fa/challenge?sent=1"),
        ("alice", "/account/_2fa/challenge"),
        ("vendor", "/admin/_2fa/challenge"),
        ("vendor", "/admin/_2fa/enroll"),
        ("vendor", "/admin/_2fa/enroll?sent=1&country_code=1&phone=2015550199"),
        ("alice", "/admin/orders"),
        ("alice", "/admin/_2fa/logout"),
    ],
)
async def test_get_pages_never_send_or_store(harness: Harness, user: str, url: str) -> None:
    before = await snapshot(harness)
    for _ in range(3):
        response = await harness.client.get(url, headers=harness.as_user(user), follow_redirects=True)
        assert response.status_code == 200
    assert await snapshot(harness) == before
    assert await outbox_rows.latest(harness.service.store) == []


@pytest.mark.parametrize("user", ["alice", "vendor"])
async def test_post_on_a_get_page_is_405(harness: Harness, user: str) -> None:
    # The challenge is the only page that has no form of its own (enroll, logout, phone and manage
    # take a POST; send and verify take nothing else).
    headers = harness.as_user(user)
    token = await harness.csrf(headers)
    before = await snapshot(harness)
    response = await post_form(harness, "/admin/_2fa/challenge", {"csrf_token": token}, headers)
    assert await snapshot(harness) == before
    assert response.status_code == 405
    assert_no_traceback(response)


# ---------------------------------------------------------------------- forms: never trusted


async def _right_code_post(h: Harness) -> tuple[dict[str, str], str, str]:
    alice = h.as_user("alice")
    await h.send(alice)
    return alice, await h.csrf(alice), await h.latest_code()


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("page", PAGES)
async def test_a_ten_megabyte_form_is_413_and_changes_nothing(
    harness: Harness, page: str, streamed: bool
) -> None:
    alice, token, code = await _right_code_post(harness)
    before = await snapshot(harness)
    body = f"csrf_token={token}&code={code}&country_code=1&phone=2015550199&pad=".encode() + b"x" * 10_000_000
    headers = {**alice, "content-type": "application/x-www-form-urlencoded"}

    response = await harness.client.post(
        f"/admin/_2fa/{page}", content=_chunks(body) if streamed else body, headers=headers
    )

    assert response.status_code == 413
    assert_no_traceback(response)
    assert_security_headers(response)
    assert "set-cookie" not in response.headers
    assert await snapshot(harness) == before
    assert (await harness.verify(alice, code)).status_code == 303  # the code was not spent


@pytest.mark.parametrize(("extra", "status"), [(0, 303), (1, 413)])
async def test_the_form_size_limit_is_exact(harness: Harness, extra: int, status: int) -> None:
    alice, token, code = await _right_code_post(harness)
    head = f"csrf_token={token}&code={code}&pad=".encode()
    body = head + b"x" * (harness.settings.max_form_bytes - len(head) + extra)
    headers = {**alice, "content-type": "application/x-www-form-urlencoded"}
    response = await harness.client.post("/admin/_2fa/verify", content=body, headers=headers)
    assert response.status_code == status


def _form_bytes(token: str, code: str) -> bytes:
    return f"csrf_token={token}&code={code}".encode()


BAD_FORMS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "json": lambda t, c: {
        "content": json.dumps({"csrf_token": t, "code": c}).encode(),
        "headers": {"content-type": "application/json"},
    },
    "multipart": lambda t, c: {"data": {"csrf_token": t, "code": c}, "files": {"f": ("a.txt", b"a")}},
    "text-plain": lambda t, c: {"content": _form_bytes(t, c), "headers": {"content-type": "text/plain"}},
    "no-content-type": lambda t, c: {"content": _form_bytes(t, c)},
    "form-prefix-type": lambda t, c: {
        "content": _form_bytes(t, c),
        "headers": {"content-type": "application/x-www-form-urlencodedx"},
    },
    "raw-non-utf8": lambda t, c: {
        "content": _form_bytes(t, c) + b"&name=\xff\xfe",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "escaped-non-utf8": lambda t, c: {
        "content": _form_bytes(t, c) + b"&name=%FF%FE",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "lone-surrogate": lambda t, c: {
        "content": _form_bytes(t, c) + b"&name=%ED%A0%80",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "duplicate-code": lambda t, c: {
        "content": _form_bytes(t, c) + f"&code={c}".encode(),
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "duplicate-token": lambda t, c: {
        "content": _form_bytes(t, c) + f"&csrf_token={t}".encode(),
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "too-many-fields": lambda t, c: {
        "content": _form_bytes(t, c) + b"".join(b"&f%d=1" % i for i in range(30)),
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
}


@pytest.mark.parametrize("case", list(BAD_FORMS))
async def test_a_malformed_form_is_400_never_a_traceback(harness: Harness, case: str) -> None:
    alice, token, code = await _right_code_post(harness)
    before = await snapshot(harness)
    kwargs = BAD_FORMS[case](token, code)
    kwargs["headers"] = {**alice, **kwargs.get("headers", {})}

    response = await harness.client.post("/admin/_2fa/verify", **kwargs)

    assert response.status_code == 400
    assert_no_traceback(response)
    assert_security_headers(response)
    assert "set-cookie" not in response.headers
    assert await snapshot(harness) == before
    assert (await harness.verify(alice, code)).status_code == 303


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "path", ["/admin/_2fa/nope", "/admin/_2fa", "/admin/_2fa/challenge/extra", "/admin/_2fa/static/other.css"]
)
async def test_an_unknown_page_is_404(harness: Harness, path: str, method: str) -> None:
    alice = harness.as_user("alice")
    token = await harness.csrf(alice)
    response = await harness.client.request(
        method, path, headers=alice, data={"csrf_token": token} if method == "POST" else None
    )
    assert response.status_code == 404
    assert "Page not found" in response.text
    assert_no_traceback(response)


@pytest.mark.parametrize(
    ("method", "url", "location"),
    [
        ("GET", "/admin/_2fa/challenge", "/admin"),
        ("GET", "/admin/_2fa/enroll", "/admin"),
        ("POST", "/admin/_2fa/send", "/admin"),
        ("POST", "/admin/_2fa/verify", "/admin"),
        ("GET", "/account/_2fa/challenge", "/account"),
    ],
)
async def test_a_visitor_not_logged_in_to_the_shop_is_sent_to_its_login(
    harness: Harness, method: str, url: str, location: str
) -> None:
    response = await harness.client.request(method, url)
    assert response.status_code == 303
    assert response.headers["location"] == location
    assert await outbox_rows.latest(harness.service.store) == []


# ---------------------------------------------------------------------- templates_dir


async def test_templates_dir_overrides_a_page(make_harness: Any, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "challenge.html").write_text(
        '{% extends "base.html" %}{% block title %}Our own title{% endblock %}'
        "{% block content %}<h1>Shop-branded challenge</h1><p>{{ masked_phone }}</p>"
        '<form method="post" action="{{ url(\'verify\') }}">'
        '<input type="hidden" name="csrf_token" value="{{ csrf_token }}">'
        '<input name="code"></form>{% endblock %}'
    )
    h: Harness = await make_harness(templates_dir=str(folder))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    alice = h.as_user("alice")

    page = await h.client.get("/admin/_2fa/challenge", headers=alice)
    assert page.status_code == 200
    assert "<title>Our own title</title>" in page.text
    assert "Shop-branded challenge" in page.text
    assert "+1 ••• ••• 0123" in page.text
    assert "Enter your code" not in page.text
    assert '/_2fa/static/tfa.css"' in page.text  # base.html still comes from the package
    assert_security_headers(page)
    # The overriding page is fully working, and the pages it does not override stay the package's.
    await h.send(alice)
    assert (await h.verify(alice, await h.latest_code())).status_code == 303
    enroll = await h.client.get("/admin/_2fa/enroll", headers=h.as_user("vendor"))
    assert "Set up two-step verification" in enroll.text


# ---------------------------------------------------------------------- req 15 through the logout page


async def test_logout_revokes_the_proof_already_issued(harness: Harness) -> None:
    """A copy of the cookie (another tab, a stolen value) must die with the logout, not just the jar's."""
    alice = harness.as_user("alice")
    token = await harness.csrf(alice)
    proof = await harness.pass_challenge("alice")
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200

    assert (
        await harness.client.post("/admin/_2fa/logout", data={"csrf_token": token}, headers=alice)
    ).status_code == 303
    harness.clock.advance(harness.settings.revocation_check_seconds + 1)
    harness.client.cookies.set("tfa_admin", proof)

    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 303
