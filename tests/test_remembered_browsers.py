"""Remembered browsers (issue 15): opt-in after a right code, a random token stored as a hash,
bound to the interface and user; the challenge skipped with one indexed query when the proof is
issued, never a re-check; forgotten one by one (its proofs refused on every worker within
revocation_check_seconds) or all at once by any generation bump."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.harness import ADMIN_PHONE, Harness, config
from tfa_middleware import TwoFactorMiddleware
from tfa_middleware.store import events as event_rows
from tfa_middleware.tables import metadata

DAYS = 30


@pytest.fixture
async def h(make_harness: Callable[..., Any], tmp_path: Path) -> Harness:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["remember_days"] = DAYS
    harness: Harness = await make_harness(interfaces=interfaces)
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await harness.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    return harness


@pytest.fixture
async def second_browser(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://shop.test") as c:
        yield c


async def remembered(
    h: Harness, user: str = "alice", client: httpx.AsyncClient | None = None
) -> httpx.Response:
    """Sign in with a texted code, the box ticked; the answer that sets the cookies."""
    client = client or h.client
    headers = h.as_user(user)
    page = await client.get("/admin/_2fa/challenge", headers=headers)
    assert 'name="remember"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    await client.post("/admin/_2fa/send", data={"csrf_token": token.group(1)}, headers=headers)
    done = await client.post(
        "/admin/_2fa/verify",
        data={"csrf_token": token.group(1), "code": await h.latest_code(), "remember": "1"},
        headers=headers,
    )
    assert done.status_code == 303, done.text
    return done


def drop_proof(client: httpx.AsyncClient) -> None:
    """The proof expires (a new shop login, a closed browser); the remembered cookie stays."""
    client.cookies.delete("tfa_admin")


async def test_off_by_default(harness: Harness) -> None:
    page = await harness.client.get("/admin/_2fa/challenge", headers=harness.as_user("alice"))
    assert 'name="remember"' not in page.text


async def test_the_cookie_is_a_random_token_stored_only_as_a_hash(h: Harness) -> None:
    done = await remembered(h)
    header = next(v for v in done.headers.get_list("set-cookie") if v.startswith("tfa_admin_remember="))
    token = header.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 256 bits, base64url
    assert "HttpOnly" in header
    assert "SameSite=lax" in header
    assert f"Max-Age={DAYS * 86400}" in header
    async with h.service.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = " ".join(" ".join(map(str, r)) for r in (await conn.execute(select(table))).all())
            assert token not in rows, table.name
    browsers = await h.service.factors.remembered_browsers("admin", "alice")
    assert [(b.label, b.network) for b in browsers] == [("A browser", "127.0.0.0/24")]


async def test_over_https_the_cookie_is_host_prefixed_and_secure(h: Harness) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="https://shop.test") as c:
        done = await remembered(h, client=c)
    names = [v.split("=", 1)[0] for v in done.headers.get_list("set-cookie")]
    assert "__Host-tfa_admin_remember" in names
    header = next(
        v for v in done.headers.get_list("set-cookie") if v.startswith("__Host-tfa_admin_remember=")
    )
    assert "; Secure" in header
    assert "Path=/" in header


async def test_a_remembered_browser_skips_the_challenge_with_one_query(h: Harness) -> None:
    await remembered(h)
    drop_proof(h.client)
    headers = h.as_user("alice")
    asked = await h.client.get("/admin/orders", headers=headers)
    assert asked.status_code == 303
    before = h.queries.count
    skipped = await h.client.get(asked.headers["location"], headers=headers)
    assert h.queries.count - before == 1  # the recall, on the unique token hash
    assert skipped.status_code == 303
    assert skipped.headers["location"] == "/admin/orders"
    assert "tfa_admin" in skipped.cookies
    before = h.queries.count
    for _ in range(5):
        assert (await h.client.get("/admin/orders", headers=headers)).text == "shop page /admin/orders"
    assert h.queries.count - before <= 1  # the revocation cache's first fill, then nothing
    proof = await h.client.get("/admin/api/orders", headers=headers)
    assert proof.json() == {"ok": True, "tfa": True}


async def test_a_remembered_browser_never_passes_a_re_check(h: Harness) -> None:
    await remembered(h)
    drop_proof(h.client)
    headers = h.as_user("alice")
    await h.client.get("/admin/_2fa/challenge", headers=headers)  # the proof, without a code
    account = await h.client.get("/admin/_2fa/account", headers=headers)
    assert account.status_code == 303
    assert "reauth=1" in account.headers["location"]
    challenge = await h.client.get(account.headers["location"], headers=headers)
    assert challenge.status_code == 200
    assert "Enter your code" in challenge.text
    assert 'name="remember"' not in challenge.text


async def test_the_browser_is_bound_to_its_user_and_interface(h: Harness) -> None:
    done = await remembered(h)
    token = done.cookies["tfa_admin_remember"]
    h.client.cookies.clear()
    h.client.cookies.set("tfa_admin_remember", token)
    bob = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("bob"))
    assert bob.status_code == 200  # the challenge, not a skip
    h.client.cookies.set("tfa_customer_remember", token)
    customer = await h.client.get(
        "/account/_2fa/challenge", headers=h.as_user("alice"), follow_redirects=False
    )
    assert customer.status_code in (200, 303)
    assert "tfa_customer" not in customer.cookies


async def test_it_expires_after_remember_days(h: Harness) -> None:
    await remembered(h)
    drop_proof(h.client)
    h.clock.advance(DAYS * 86400 + 1)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert page.status_code == 200


@pytest.mark.parametrize("bump", ["sign_out", "reset", "phone_change"])
async def test_any_generation_bump_forgets_every_browser(h: Harness, bump: str) -> None:
    await remembered(h)
    drop_proof(h.client)
    tfa = h.service
    if bump == "sign_out":
        await tfa.sign_out("admin", "alice")
    elif bump == "reset":
        await tfa.reset("admin", "alice")
    else:
        await tfa.set_phone("admin", "alice", "1", "2015550177", confirmed=True)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert page.status_code in (200, 303)
    assert "tfa_admin" not in page.cookies
    assert await tfa.factors.remembered_browsers("admin", "alice") == []


async def test_a_forgotten_browser_is_challenged_on_every_worker(
    h: Harness, second_browser: httpx.AsyncClient
) -> None:
    """Browser A is remembered; from browser B, the user forgets A on the account page. A's proof
    is refused by both workers (two middlewares over one database) within revocation_check_seconds,
    and its cookie no longer skips the challenge."""
    await remembered(h)
    drop_proof(h.client)
    headers = h.as_user("alice")
    await h.client.get("/admin/_2fa/challenge", headers=headers)  # A's proof from its cookie alone
    worker2 = TwoFactorMiddleware(h.app.app, service=h.service, clock=h.clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=worker2), base_url="http://shop.test"
    ) as a2:
        a2.cookies.update(h.client.cookies)
        for client in (h.client, a2):  # both workers let A in, and cache the user's revocations
            assert (await client.get("/admin/orders", headers=headers)).status_code == 200
        b = second_browser
        page = await b.get("/admin/_2fa/challenge", headers=headers)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        await b.post("/admin/_2fa/send", data={"csrf_token": token.group(1)}, headers=headers)
        await b.post(
            "/admin/_2fa/verify",
            data={"csrf_token": token.group(1), "code": await h.latest_code()},
            headers=headers,
        )
        account = await b.get("/admin/_2fa/account", headers=headers)
        assert "Remembered browsers" in account.text
        browser_id = re.search(r'name="browser_id" value="(\d+)"', account.text)
        assert browser_id
        forgot = await b.post(
            "/admin/_2fa/account",
            data={
                "csrf_token": token.group(1),
                "action": "forget_browser",
                "browser_id": browser_id.group(1),
            },
            headers=headers,
        )
        assert forgot.status_code == 303
        h.clock.advance(h.settings.revocation_check_seconds)
        for client in (h.client, a2):
            refused = await client.get("/admin/orders", headers=headers)
            assert refused.status_code == 303, "a forgotten browser's proof still worked"
        again = await h.client.get("/admin/_2fa/challenge", headers=headers)
        assert again.status_code == 200
        assert "Enter your code" in html.unescape(again.text)
        # B, signed in with a code, is untouched.
        assert (await b.get("/admin/orders", headers=headers)).status_code == 200
    kinds = [e.kind for e in await event_rows.latest(h.service.store, "admin", "alice", limit=50)]
    assert "browser_remembered" in kinds
    assert "browser_forgotten" in kinds


async def test_a_re_check_stays_one_through_the_send(h: Harness) -> None:
    """Sending the code of a re-check must not turn it into a plain challenge, which the
    remembered browser (or any proof) would pass without a code."""
    await remembered(h)
    drop_proof(h.client)
    headers = h.as_user("alice")
    await h.client.get("/admin/_2fa/challenge", headers=headers)  # the remembered proof
    h.clock.advance(60)
    url = "/admin/_2fa/challenge?reauth=1&next=/admin/_2fa/account"
    page = await h.client.get(url, headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    send = re.search(r'action="([^"]*/send[^"]*)"', page.text)
    assert send
    sent = await h.client.post(
        html.unescape(send.group(1)), data={"csrf_token": token.group(1)}, headers=headers
    )
    assert sent.status_code == 303
    assert "reauth=1" in sent.headers["location"]
    shown = await h.client.get(sent.headers["location"], headers=headers)
    assert shown.status_code == 200
    assert "We sent a code" in shown.text
