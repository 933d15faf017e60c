"""Passkeys on the pages (issue 16), over HTTP through the middleware: added from the account page
(a fresh second factor), on the way in (no factor yet) and for require_factors; used at the
challenge; named, listed and removed by the user, removed by a manager (page and command line),
every change audited and given to on_event. The browser's side is the software authenticator
(tests/authenticator.py); tests/test_browser.py does the same with Chromium's own.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.authenticator import ORIGIN, SoftAuthenticator, passkey_interfaces
from tests.harness import ADMIN_PHONE, Harness
from tests.helpers import CLI_ENV, Cli, config_file
from tfa_middleware import TwoFactor
from tfa_middleware.service import AuditEvent
from tfa_middleware.settings import load_settings

PAGES = "/admin/_2fa"


@pytest.fixture
async def h(make_harness: Callable[..., Awaitable[Harness]]) -> tuple[Harness, list[AuditEvent]]:
    heard: list[AuditEvent] = []
    interfaces = passkey_interfaces(manage={"allow_user_ids": ["alice"]})
    harness = await make_harness(interfaces=interfaces, on_event=heard.append)
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await harness.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    return harness, heard


async def post(h: Harness, user: str, page: str, **data: str) -> httpx.Response:
    headers = h.as_user(user)
    token = await h.csrf(headers, f"{PAGES}/logout")
    return await h.client.post(f"{PAGES}/{page}", data={"csrf_token": token, **data}, headers=headers)


async def add_passkey(h: Harness, user: str, key: SoftAuthenticator, label: str = "") -> httpx.Response:
    options = await post(h, user, "passkey", action="add_options")
    assert options.status_code == 200, options.text
    assert options.headers["content-type"] == "application/json"
    return await post(h, user, "passkey", action="add", code=key.create(options.text, ORIGIN), label=label)


async def use_passkey(h: Harness, user: str, key: SoftAuthenticator, **data: str) -> httpx.Response:
    options = await post(h, user, "passkey", action="sign_in_options")
    assert options.status_code == 200, options.text
    return await post(h, user, "verify", factor="webauthn", code=key.get(options.text, ORIGIN), **data)


async def test_a_passkey_added_on_the_account_page_signs_the_user_in(
    h: tuple[Harness, list[AuditEvent]],
) -> None:
    harness, heard = h
    await harness.pass_challenge("alice")
    headers = harness.as_user("alice")
    account = await harness.client.get(f"{PAGES}/account", headers=headers)
    assert "Passkeys and security keys" in account.text
    assert "No passkey is set up." in account.text
    assert 'src="/admin/_2fa/static/passkeys.js"' in account.text
    assert 'data-origins="https://shop.test"' in account.text
    key = SoftAuthenticator()
    added = await add_passkey(harness, "alice", key, label="  Work   laptop ")
    assert added.status_code == 303, added.text
    assert added.headers["location"].startswith(f"{PAGES}/account?done=passkey")
    listed = await harness.client.get(added.headers["location"], headers=headers)
    assert "Your passkey is added" in listed.text
    assert "<strong>Work laptop</strong>" in listed.text
    assert "passkey_added" in [e.kind for e in heard]

    harness.client.cookies.clear()
    challenge = await harness.client.get(f"{PAGES}/challenge?next=/admin/orders", headers=headers)
    assert "<h1>Use your passkey</h1>" in challenge.text  # a passkey comes first
    assert "Text a code to +1 ••• ••• 0123" in challenge.text
    assert "Passkeys need JavaScript" in challenge.text  # in <noscript>
    done = await use_passkey(harness, "alice", key)
    assert done.status_code == 303, done.text
    assert (await harness.client.get("/admin/orders", headers=headers)).text == "shop page /admin/orders"
    assert heard[-1].kind == "verify_ok"
    assert (heard[-1].detail or {})["factor"] == "webauthn"


async def test_without_javascript_the_page_says_passkeys_need_it(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, _ = h
    await harness.pass_challenge("alice")
    await add_passkey(harness, "alice", SoftAuthenticator())
    harness.client.cookies.clear()
    empty = await post(harness, "alice", "verify", factor="webauthn", code="")
    assert empty.status_code == 400
    assert "Passkeys need JavaScript" in empty.text
    assert "Use your passkey" in empty.text
    assert "Text a code to" in empty.text  # the other ways still work without it
    # A page that adds one without JavaScript sends no credential: it says why, and adds nothing.
    await harness.pass_challenge("alice")
    nothing = await post(harness, "alice", "passkey", action="add", code="")
    assert nothing.headers["location"].startswith(f"{PAGES}/account?failed=javascript")
    page = await harness.client.get(nothing.headers["location"], headers=harness.as_user("alice"))
    assert 'role="alert">Passkeys need JavaScript' in page.text


async def test_adding_needs_a_fresh_second_factor(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, _ = h
    await harness.pass_challenge("alice")
    harness.clock.advance(601)  # past phone_change_fresh_seconds
    options = await post(harness, "alice", "passkey", action="add_options")
    assert options.status_code == 403
    key = SoftAuthenticator()
    refused = await post(harness, "alice", "passkey", action="add", code=key.create('{"challenge": "AA", '
                         '"rp": {"id": "shop.test"}}', ORIGIN))  # fmt: skip
    assert refused.status_code == 303
    assert refused.headers["location"].startswith(f"{PAGES}/challenge?reauth=1")
    assert await harness.service.factors.passkeys.of_user("admin", "alice") == []


async def test_a_wrong_origin_is_refused_on_the_page(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, heard = h
    await harness.pass_challenge("alice")
    options = await post(harness, "alice", "passkey", action="add_options")
    phished = SoftAuthenticator().create(options.text, "https://shop-test.evil.example")
    refused = await post(harness, "alice", "passkey", action="add", code=phished)
    assert refused.headers["location"].startswith(f"{PAGES}/account?failed=passkey")
    page = await harness.client.get(refused.headers["location"], headers=harness.as_user("alice"))
    assert "That passkey wasn&#39;t added." in page.text
    assert heard[-1].kind == "verify_failed"
    assert "origin" in (heard[-1].detail or {})["reason"]


async def test_no_passkey_means_no_options(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, _ = h
    options = await post(harness, "alice", "passkey", action="sign_in_options")
    assert options.status_code == 404
    assert options.json() == {"error": "no passkey"}
    page = await harness.client.get(f"{PAGES}/challenge", headers=harness.as_user("alice"))
    assert "Use a passkey" not in page.text  # not a way in for alice yet


async def test_options_need_this_sites_form_token(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, _ = h
    refused = await harness.client.post(
        f"{PAGES}/passkey", data={"action": "sign_in_options"}, headers=harness.as_user("alice")
    )
    assert refused.status_code == 403
    cross = await harness.client.post(
        f"{PAGES}/passkey",
        data={"action": "sign_in_options"},
        headers={
            **harness.as_user("alice"),
            "origin": "https://evil.example",
            "sec-fetch-site": "cross-site",
        },
    )
    assert cross.status_code == 403


async def test_a_first_passkey_on_the_way_in_is_the_sign_in(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await make_harness(interfaces=passkey_interfaces(factors=["webauthn", "recovery"]))
    headers = harness.as_user("carol")
    start = await harness.client.get("/admin/orders", headers=headers, follow_redirects=True)
    assert "protected by a passkey or a security key" in start.text
    assert "Use a passkey" in start.text
    assert "Text a code" not in start.text
    added = await add_passkey(harness, "carol", SoftAuthenticator(), label="Phone")
    assert added.status_code == 303, added.text
    assert "tfa_admin" in added.cookies
    assert (await harness.client.get("/admin/orders", headers=headers)).text == "shop page /admin/orders"
    # Once a factor exists, the way in is closed: a second one needs a fresh second factor.
    harness.client.cookies.clear()
    assert (await post(harness, "carol", "passkey", action="add_options")).status_code == 403


async def test_require_factors_asks_for_a_passkey_before_the_shop_opens(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await make_harness(interfaces=passkey_interfaces(require_factors=["webauthn"]))
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    headers = harness.as_user("alice")
    await harness.send(headers)
    verified = await harness.verify(headers, await harness.latest_code())
    assert verified.headers["location"].startswith(f"{PAGES}/account?setup=1")
    page = await harness.client.get(verified.headers["location"], headers=headers)
    assert "This account needs a passkey" in page.text
    assert (await harness.client.get("/admin/orders", headers=headers)).status_code == 303
    added = await add_passkey(harness, "alice", SoftAuthenticator())
    assert added.status_code == 303, added.text
    done = await harness.client.get(added.headers["location"], headers=headers)
    assert "All set" in done.text
    assert (await harness.client.get("/admin/orders", headers=headers)).text == "shop page /admin/orders"


async def test_the_user_renames_and_removes_a_passkey(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, heard = h
    await harness.pass_challenge("alice")
    await add_passkey(harness, "alice", SoftAuthenticator(), label="Old name")
    (passkey,) = await harness.service.factors.passkeys.of_user("admin", "alice")
    renamed = await post(
        harness, "alice", "account", action="rename", factor_id=str(passkey.id), label="YubiKey"
    )
    assert renamed.headers["location"].startswith(f"{PAGES}/account?done=renamed")
    page = await harness.client.get(f"{PAGES}/account", headers=harness.as_user("alice"))
    assert "<strong>YubiKey</strong>" in page.text
    assert "Remove YubiKey 1" in page.text
    harness.clock.advance(601)
    stale = await post(harness, "alice", "account", action="remove", factor_id=str(passkey.id))
    assert "reauth=1" in stale.headers["location"]
    harness.client.cookies.clear()
    await harness.pass_challenge("alice")
    removed = await post(harness, "alice", "account", action="remove", factor_id=str(passkey.id))
    assert removed.headers["location"].startswith(f"{PAGES}/account?done=removed")
    assert await harness.service.factors.passkeys.of_user("admin", "alice") == []
    kinds = [e.kind for e in heard]
    assert kinds.index("passkey_added") < kinds.index("factor_renamed") < kinds.index("factor_removed")


async def test_a_manager_removes_a_users_passkey(h: tuple[Harness, list[AuditEvent]]) -> None:
    harness, heard = h
    await harness.pass_challenge("bob")
    await add_passkey(harness, "bob", SoftAuthenticator(), label="Bob's key")
    harness.client.cookies.clear()
    await harness.pass_challenge("alice")
    url = f"{PAGES}/manage?interface=admin&user=bob"
    page = await harness.client.get(url, headers=harness.as_user("alice"))
    assert "Passkey: Bob&#39;s key" in page.text
    (passkey,) = await harness.service.factors.passkeys.of_user("admin", "bob")
    removed = await post(
        harness, "alice", "manage?interface=admin&user=bob", action="remove_factor",
        interface="admin", user_id="bob", factor_id=str(passkey.id),
    )  # fmt: skip
    assert "Removed from bob." in removed.text
    assert await harness.service.factors.passkeys.of_user("admin", "bob") == []
    assert (heard[-1].kind, heard[-1].detail) == (
        "factor_removed",
        {"factor": "webauthn", "factor_id": str(passkey.id), "by": "admin/alice"},
    )


def test_the_command_line_lists_and_removes_a_passkey(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path)
    text = path.read_text().replace(
        "    path_prefix: /admin\n",
        "    path_prefix: /admin\n    factors: [webauthn, sms]\n    rp_id: shop.test\n",
        1,
    )
    path.write_text(text)
    for name, value in CLI_ENV.items():
        monkeypatch.setenv(name, value)

    async def with_a_passkey() -> None:
        async with TwoFactor.from_settings(load_settings(path)) as tfa:
            await tfa.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
            options = await tfa.factors.passkey_creation_options("admin", "alice")
            credential = SoftAuthenticator().create(options, ORIGIN)
            await tfa.factors.add_passkey("admin", "alice", credential, label="YubiKey")

    asyncio.run(with_a_passkey())
    listed = [
        json.loads(line)
        for line in cli(
            "users", "factors", "--config", str(path), "admin", "alice", "--json"
        ).stdout.splitlines()
    ]
    assert [(r["kind"], r["label"]) for r in listed] == [("sms", None), ("webauthn", "YubiKey")]
    removed = cli(
        "users", "remove-factor", "--config", str(path), "--json", "admin", "alice", str(listed[1]["id"])
    )
    assert json.loads(removed.stdout) == {"removed": listed[1]["id"], "kind": "webauthn"}
    audit = cli("audit", "--config", str(path), "--user", "alice", "--json").stdout
    events = [json.loads(line) for line in audit.splitlines()]
    assert [(e["event"], e.get("factor")) for e in events][-2:] == [
        ("passkey_added", "webauthn"),
        ("factor_removed", "webauthn"),
    ]
    assert re.search(r'"by": "cli:', audit)


async def test_a_passkey_user_who_chooses_a_texted_code_gets_its_page(
    h: tuple[Harness, list[AuditEvent]],
) -> None:
    """The code's page after "Text me a code", not the user's first way (the passkey) again."""
    harness, _ = h
    await harness.pass_challenge("alice")
    await add_passkey(harness, "alice", SoftAuthenticator())
    harness.client.cookies.clear()
    headers = harness.as_user("alice")
    chosen = await harness.client.get(f"{PAGES}/challenge?factor=sms", headers=headers)
    assert "Text me a code" in chosen.text
    sent = await post(harness, "alice", "send")
    assert sent.status_code == 303
    page = await harness.client.get(sent.headers["location"], headers=headers)
    assert 'id="code"' in page.text
    assert "We sent a code to +1 ••• ••• 0123." in page.text
    assert "Use a passkey or security key" in page.text  # still another way
    assert (await harness.verify(headers, await harness.latest_code())).status_code == 303
