"""The OWASP testing guide's walk over a second factor (WSTG-ATHN-11), as an attacker would try it.

Each test is one attack, end to end through the middleware with the limits a shop gets by default.
Finer cases of each live in the feature's own test file; this file is the checklist.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.asgi_helpers import asgi_websocket
from tests.harness import ADMIN_PHONE, SECRET, Harness, config
from tfa_middleware import ConfigError, load_settings
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import events as event_rows
from tfa_middleware.store import outbox as outbox_rows


@pytest.fixture
async def shop(make_harness: Callable[..., Awaitable[Harness]]) -> Harness:
    h = await make_harness(limits=LimitSettings())
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    await h.service.set_phone("customer", "alice", "1", "2015550125", confirmed=True)
    return h


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
@pytest.mark.parametrize(
    "path", ["/admin", "/admin/orders", "/admin/api/orders", "/ADMIN/orders/", "/account"]
)
async def test_direct_navigation_past_the_challenge_reaches_nothing(
    shop: Harness, method: str, path: str
) -> None:
    response = await shop.client.request(method, path, headers=shop.as_user("alice"))
    assert response.status_code in (303, 401)
    assert "shop page" not in response.text
    assert '"ok"' not in response.text


async def test_a_websocket_past_the_challenge_is_closed(shop: Harness) -> None:
    sent = await asgi_websocket(shop.app, "/admin/ws", headers={"x-test-user": "alice"})
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "second factor required"}]


async def test_a_used_code_cannot_be_replayed(shop: Harness) -> None:
    alice = shop.as_user("alice")
    await shop.send(alice)
    code = await shop.latest_code()
    assert (await shop.verify(alice, code)).status_code == 303
    token = await shop.csrf(alice, "/admin/_2fa/logout")
    await shop.client.post("/admin/_2fa/logout", data={"csrf_token": token}, headers=alice)
    shop.clock.advance(1)
    replay = await shop.verify(alice, code)
    assert replay.status_code == 400
    assert "tfa_admin" not in replay.cookies


async def test_a_proof_cookie_does_not_move_between_users_or_interfaces(shop: Harness) -> None:
    proof = await shop.pass_challenge("alice")

    async def get(path: str, user: str, cookie: str) -> int:
        shop.client.cookies.clear()
        headers = {**shop.as_user(user), "cookie": f"{cookie}={proof}"}
        return (await shop.client.get(path, headers=headers)).status_code

    assert await get("/admin/orders", "bob", "tfa_admin") == 303
    assert await get("/account/orders", "alice", "tfa_customer") == 303
    assert await get("/admin/orders", "alice", "tfa_admin") == 200  # the control: the cookie itself is good


async def test_brute_force_from_many_sessions_and_addresses_hits_one_account_lock(shop: Harness) -> None:
    await shop.send(shop.as_user("alice"))
    code = await shop.latest_code()
    guesses = [f"{n:06d}" for n in range(100) if f"{n:06d}" != code]
    locked_answers = 0
    for i, guess in enumerate(guesses[:30]):
        headers = {
            **shop.as_user("alice", session=f"stolen-session-{i}"),
            "x-forwarded-for": f"198.51.100.{i}",
        }
        shop.clock.advance(16)  # past every growing delay
        response = await shop.verify(headers, guess)
        assert response.status_code == 400
        locked_answers += "Too many wrong codes" in response.text
    # Five guesses were checked (each is an audit event); the fifth locked the account for all of
    # them, so it and the 25 after it were answered with the lock.
    assert [e.kind for e in await event_rows.latest(shop.service.store, "admin", "alice")].count(
        "verify_failed"
    ) == 5
    assert locked_answers == 26


@pytest.mark.parametrize(
    "payload", ["//evil.example", "/\\evil.example", "https:evil.example", "/admin%0d%0aSet-Cookie:x=1"]
)
async def test_open_redirects_after_the_code_fall_back_to_the_prefix(shop: Harness, payload: str) -> None:
    alice = shop.as_user("alice")
    await shop.send(alice)
    done = await shop.verify(alice, await shop.latest_code(), next_=payload)
    assert (done.status_code, done.headers["location"]) == (303, "/admin")


@pytest.mark.parametrize("page", ["send", "verify", "enroll", "logout"])
@pytest.mark.parametrize("forgery", ["no-token", "cross-site", "foreign-origin"])
async def test_csrf_on_every_form_is_refused(shop: Harness, page: str, forgery: str) -> None:
    alice = shop.as_user("alice")
    token = await shop.csrf(alice)
    data = {"csrf_token": token, "code": "123456", "country_code": "1", "phone": "2015550199"}
    headers = dict(alice)
    if forgery == "no-token":
        del data["csrf_token"]
    elif forgery == "cross-site":
        headers["sec-fetch-site"] = "cross-site"
    else:
        headers["origin"] = "https://evil.example"
    before = len(await event_rows.latest(shop.service.store))
    response = await shop.client.post(f"/admin/_2fa/{page}", data=data, headers=headers)
    assert response.status_code == 403
    assert len(await event_rows.latest(shop.service.store)) == before


@pytest.mark.parametrize("page", ["challenge", "enroll", "logout", "nowhere"])
async def test_no_page_of_ours_can_be_framed(shop: Harness, page: str) -> None:
    response = await shop.client.get(f"/admin/_2fa/{page}", headers=shop.as_user("alice"))
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_no_code_phone_number_or_key_reaches_a_log_or_an_event(
    shop: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = shop.as_user("alice")
    await shop.send(alice)
    first = await shop.latest_code()
    await shop.verify(alice, first[::-1] if first[::-1] != first else "000000")
    shop.clock.advance(2)
    await shop.verify(alice, first)
    await shop.service.require_enrollment("admin", "alice")
    await shop.service.reset("admin", "alice")
    await shop.client.post(
        "/admin/_2fa/enroll",
        data={
            "csrf_token": await shop.csrf(alice, "/admin/_2fa/enroll"),
            "country_code": "1",
            "phone": "2015550177",
        },
        headers=alice,
    )
    second = await shop.latest_code()
    events = repr(await event_rows.latest(shop.service.store))
    logs = "\n".join(r.getMessage() for r in caplog.records)
    secrets = [first, second, SECRET, "+12015550123", "2015550123", "2015550177"]
    for text, where in ((logs, "logs"), (events, "events")):
        found = [s for s in secrets if s in text]
        assert not found, f"{found} in the {where}"
    assert "code_sent" in events
    assert re.search(r"\+1 ••• ••• 0177", events)


def _any_config() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    )
    keys = st.sampled_from(
        [
            "secret_keys",
            "interfaces",
            "admin",
            "path_prefix",
            "identity",
            "from",
            "key",
            "limits",
            "provider",
            "exempt",
            "name",
            "production_mode",
            "database_url",
            "x",
        ]
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4)
    )


def problems_of(path: Path) -> list[str] | None:
    """The problems ``load_settings`` finds in the file, or None when it loads: never another exception."""
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        return exc.problems
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_any_config())
def test_any_config_file_is_either_settings_or_a_config_error(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    problems = problems_of(path)
    if problems is not None:
        assert problems
        assert all(isinstance(p, str) and p for p in problems)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_as_a_config_file_is_either_settings_or_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    problems = problems_of(path)
    assert problems is None or problems


def test_a_good_config_survives_the_same_path(tmp_path: Path) -> None:
    # The control for the two fuzz tests: their harness can load a valid file.
    path = tmp_path / "good.yaml"
    data = config(tmp_path)
    path.write_text(json.dumps(data))
    assert load_settings(path, environ={}).interfaces["admin"].path_prefix == "/admin"


# ------------------------------------------------------------------ the outside review's bypasses
# Against the demo shop itself, as the review ran them: a password known, the phone not.


@pytest.fixture
async def demo_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from demo_app.app import create_app

    monkeypatch.setenv("TFA_DEMO_DB", str(tmp_path / "demo.sqlite3"))
    app = create_app()
    mounted = Starlette(routes=[Mount("/shop", app=create_app())])
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test") as client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mounted), base_url="http://shop.test"
        ) as under_root,
    ):
        yield client, under_root


def served(response: Any) -> bool:
    return response.status_code == 200 and (
        "<h1>Orders</h1>" in response.text or "Your orders" in response.text
    )


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda s: s + b"\xe9", id="byte-appended"),
        pytest.param(lambda s: s[:-5] + b"\xe9" + s[-5:], id="byte-in-the-signature"),
        pytest.param(lambda s: b'"' + s + b'\xe9"', id="byte-inside-quotes"),
        pytest.param(lambda s: s + b"\xc3\xa9\xc3\xa9", id="utf-8-appended"),
    ],
)
@pytest.mark.parametrize(
    ("login", "form", "protected"),
    [
        ("/admin/login", {"email": "admin@example.com", "password": "admin"}, ["/admin", "/admin/users"]),
        ("/login", {"email": "customer@example.com", "password": "customer"}, ["/account"]),
    ],
)
async def test_one_byte_in_the_shops_session_cookie_skips_nothing(
    demo_client: Any, spoil: Callable[[bytes], bytes], login: str, form: dict[str, str], protected: list[str]
) -> None:
    client, _ = demo_client
    assert (await client.post(login, data=form)).status_code == 303
    session = client.cookies["session"].encode()
    client.cookies.clear()
    for path in protected:
        response = await client.get(
            path, headers={"cookie": b"session=" + spoil(session), "accept": "text/html"}
        )
        assert not served(response), path


async def test_a_root_path_skips_nothing(demo_client: Any) -> None:
    _, under_root = demo_client
    form = {"email": "admin@example.com", "password": "admin"}
    assert (await under_root.post("/shop/admin/login", data=form)).status_code == 303
    for path in ("/shop/admin", "/shop/admin/users"):
        response = await under_root.get(path, headers={"accept": "text/html"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/shop/admin/_2fa/")


# ---------------------------------------------------------------------------- issue 11: the manage page
# A manager is listed in an interface's `manage` section. Acting on oneself there must meet the
# phone page's freshness rule (security requirement 27), a phone set by a manager is only pending
# until its owner confirms it, and a manager reaches only the interfaces their allow-list grants.


@pytest.fixture
async def managers(make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path) -> Harness:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["manage"] = {"allow_user_ids": ["alice"]}
    interfaces["customer"]["manage"] = {"allow_user_ids": ["carla"]}
    h = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    await h.service.set_phone("customer", "carla", "1", "2015550125", confirmed=True)
    await h.service.set_phone("customer", "dave", "1", "2015550126", confirmed=True)
    return h


async def _manage(h: Harness, headers: dict[str, str], prefix: str = "/admin", **data: str) -> Any:
    token = await h.csrf(headers, f"{prefix}/_2fa/manage")
    return await h.client.post(f"{prefix}/_2fa/manage", data={"csrf_token": token, **data}, headers=headers)


async def test_a_manager_cannot_set_their_own_phone_with_a_stale_proof(managers: Harness) -> None:
    h = managers
    alice = h.as_user("alice")
    await h.pass_challenge("alice")
    h.clock.advance(h.settings.interface("admin").phone_change_fresh_seconds + 1)
    # The phone page asks for a fresh factor; the manage page must not be the way around it.
    assert (await h.client.get("/admin/_2fa/phone", headers=alice)).status_code == 303
    own = {"interface": "admin", "user_id": "alice", "country_code": "1", "phone": "2015550177"}
    response = await _manage(h, alice, action="set_phone", **own)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/_2fa/challenge?reauth=1&next=/admin/_2fa/manage"
    status = await h.service.status("admin", "alice")
    assert (status.masked_phone, status.pending_masked_phone) == ("+1 ••• ••• 0123", "")
    # Every other action on oneself too: a reset would drop the phone as surely.
    assert (await _manage(h, alice, action="reset", interface="admin", user_id="alice")).status_code == 303
    assert (await h.service.status("admin", "alice")).state == "active"


async def test_a_phone_set_by_a_manager_is_pending_until_its_owner_confirms_it(managers: Harness) -> None:
    h = managers
    interval = h.settings.revocation_check_seconds
    bob_proof = await h.pass_challenge("bob")
    h.client.cookies.clear()
    await h.pass_challenge("alice")
    alice = h.as_user("alice")
    done = await _manage(
        h, alice, action="set_phone", interface="admin", user_id="bob", country_code="1", phone="2015550177"
    )
    assert done.status_code == 200
    assert "The phone of bob is set" in done.text
    status = await h.service.status("admin", "bob")
    assert (status.state, status.masked_phone, status.pending_masked_phone) == (
        "pending",
        "",
        "+1 ••• ••• 0177",
    )
    set_event = [
        e for e in await event_rows.latest(h.service.store, "admin", "bob") if e.kind == "phone_set"
    ][-1]
    assert set_event.detail == {"to": "+1 ••• ••• 0177", "by": "admin/alice", "confirmed": "false"}
    # Bob's proofs issued before are revoked...
    h.client.cookies.clear()
    h.clock.advance(interval)
    bob = h.as_user("bob")
    stale = await h.client.get("/admin/orders", headers={**bob, "cookie": f"tfa_admin={bob_proof}"})
    assert stale.status_code == 303
    # ...and at his next sign-in the new number is confirmed by a code sent to it.
    h.client.cookies.clear()
    challenge = await h.client.get("/admin/_2fa/challenge", headers=bob)
    assert challenge.status_code == 303
    assert "/admin/_2fa/enroll" in challenge.headers["location"]
    token = await h.csrf(bob, "/admin/_2fa/enroll")
    page = await h.client.get("/admin/_2fa/enroll", headers=bob)
    assert "Your administrator set this number" in page.text
    assert 'name="phone"' not in page.text
    # Somebody with Bob's password alone cannot swap the manager's number for their own.
    swap = await h.client.post(
        "/admin/_2fa/enroll",
        data={"csrf_token": token, "country_code": "1", "phone": "2015550199"},
        headers=bob,
    )
    assert swap.status_code == 400
    assert "Your administrator set this number" in swap.text
    assert (await h.service.status("admin", "bob")).pending_masked_phone == "+1 ••• ••• 0177"
    await h.client.post("/admin/_2fa/send", data={"csrf_token": token}, headers=bob)
    assert (await outbox_rows.latest(h.service.store, 1))[0].to_masked == "+1 ••• ••• 0177"
    confirmed = await h.client.post(
        "/admin/_2fa/verify", data={"csrf_token": token, "code": await h.latest_code()}, headers=bob
    )
    assert confirmed.status_code == 303
    assert (await h.service.status("admin", "bob")).masked_phone == "+1 ••• ••• 0177"


async def test_a_customer_manager_cannot_act_on_or_list_another_interface(
    managers: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = managers
    carla = h.as_user("carla")
    await h.pass_challenge("carla", prefix="/account")
    page = await h.client.get("/account/_2fa/manage", headers=carla)
    assert page.status_code == 200
    assert "dave <span" in page.text
    assert "alice <span" not in page.text
    assert "bob <span" not in page.text
    caplog.set_level(logging.WARNING)
    for action in ("set_phone", "require_enrollment", "reset", "unlock"):
        data = {"interface": "admin", "user_id": "alice", "country_code": "1", "phone": "2015550177"}
        refused = await _manage(h, carla, "/account", action=action, **data)
        assert refused.status_code == 403, action
    status = await h.service.status("admin", "alice")
    assert (status.state, status.masked_phone, status.pending_masked_phone) == (
        "active",
        "+1 ••• ••• 0123",
        "",
    )
    refusals = [
        e for e in await event_rows.latest(h.service.store, "customer", "carla") if e.kind == "manage_refused"
    ]
    assert [e.detail["action"] for e in refusals if e.detail] == [
        "set_phone",
        "require_enrollment",
        "reset",
        "unlock",
    ]
    assert sum("refused" in r.getMessage() and "admin/alice" in r.getMessage() for r in caplog.records) == 4
    # The control: her own interface is hers to manage.
    allowed = await _manage(
        h, carla, "/account", action="require_enrollment", interface="customer", user_id="dave"
    )
    assert allowed.status_code == 200
    assert (await h.service.status("customer", "dave")).require_enrollment


async def test_a_manager_reaches_the_interfaces_their_allow_list_grants(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["manage"] = {"allow_user_ids": ["alice"], "interfaces": ["admin", "customer"]}
    h = await make_harness(interfaces=interfaces)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.service.set_phone("customer", "dave", "1", "2015550126", confirmed=True)
    await h.pass_challenge("alice")
    alice = h.as_user("alice")
    page = await h.client.get("/admin/_2fa/manage", headers=alice)
    assert "dave <span" in page.text
    assert "alice <span" in page.text
    done = await _manage(h, alice, action="reset", interface="customer", user_id="dave")
    assert done.status_code == 200
    assert (await h.service.status("customer", "dave")).state == "none"


# ---------------------------------------------------------------------------- issue 11: the shop's logout


async def test_the_shops_logout_ends_a_copied_session_and_proof_pair(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    # With client-side sessions (Starlette's signed cookie) a copied session cookie outlives the
    # shop's "Log out"; the shop's one call must end the proofs bound to that login.
    h = await make_harness()
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    interval = h.settings.revocation_check_seconds
    stolen = await h.pass_challenge("alice", session="login-1")
    h.client.cookies.clear()
    other = await h.pass_challenge("alice", session="login-2")
    h.client.cookies.clear()
    # A second process on the same database: revocation must be exact across processes.
    elsewhere = await make_harness()

    async def get(harness: Harness, session: str, proof: str) -> int:
        headers = {**h.as_user("alice", session=session), "cookie": f"tfa_admin={proof}"}
        response = await harness.client.get("/admin/orders", headers=headers)
        harness.client.cookies.clear()
        return response.status_code

    assert await get(elsewhere, "login-1", stolen) == 200  # warms the other process's cache
    await h.service.sign_out("admin", "alice", session_id="login-1")
    h.clock.advance(interval)
    assert await get(elsewhere, "login-1", stolen) == 303
    assert await get(h, "login-1", stolen) == 303
    assert await get(elsewhere, "login-2", other) == 200  # the other login is untouched
    events = [e for e in await event_rows.latest(h.service.store, "admin", "alice") if e.kind == "signed_out"]
    assert len(events) == 1
    assert events[0].detail
    assert "session" in events[0].detail

    # A shop that keeps the session id across logins: the next sign-in with it works again.
    h.clock.advance(interval)
    again = await h.pass_challenge("alice", session="login-1")
    h.client.cookies.clear()
    assert await get(elsewhere, "login-1", again) == 200

    # Without a session id, every proof of the user ends (the generation is bumped).
    await h.service.sign_out("admin", "alice")
    h.clock.advance(interval)
    assert await get(elsewhere, "login-2", other) == 303
    assert await get(elsewhere, "login-1", again) == 303


async def test_a_session_id_that_outlives_the_logout_passes_again_at_once(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    # Flask-Login's _id is the same at every login from one browser: after the shop's logout the
    # user logs in again with the same session id and passes the second factor within the same
    # second. The new proof has seen the sign-out and is taken; the old one has not and stays void,
    # whatever the hosts' clocks say; a later sign-out ends the new one too.
    h = await make_harness()
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    elsewhere = await make_harness()
    headers = h.as_user("alice", session="browser")

    async def status(harness: Harness, proof: str) -> int:
        response = await harness.client.get(
            "/admin/orders", headers={**headers, "cookie": f"tfa_admin={proof}"}
        )
        harness.client.cookies.clear()
        return response.status_code

    h.clock.advance(4)  # issued by a host whose clock runs 4 s ahead of the one that signs out
    old = await h.pass_challenge("alice", session="browser")
    h.client.cookies.clear()
    assert await status(elsewhere, old) == 200
    await elsewhere.service.sign_out("admin", "alice", session_id="browser")
    h.clock.advance(h.settings.revocation_check_seconds)
    assert await status(h, old) == 303

    # Logged out and straight back in: the sign-out and the new proof within one clock reading.
    for harness in (h, elsewhere):
        harness.clock.advance(h.settings.limits.send_cooldown_seconds)
    await h.service.sign_out("admin", "alice", session_id="browser")
    new = await h.pass_challenge("alice", session="browser")
    h.client.cookies.clear()
    elsewhere.clock.advance(h.settings.revocation_check_seconds)
    for harness in (h, elsewhere):
        assert await status(harness, new) == 200
        assert await status(harness, old) == 303

    h.clock.advance(1)
    await h.service.sign_out("admin", "alice", session_id="browser")
    for harness in (h, elsewhere):
        harness.clock.advance(h.settings.revocation_check_seconds)
        assert await status(harness, new) == 303


async def test_revoked_logins_cost_no_query_while_the_cache_is_warm(
    make_harness: Callable[..., Awaitable[Harness]],
) -> None:
    h = await make_harness()
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    for n in range(3):
        await h.service.sign_out("admin", "alice", session_id=f"old-{n}")
    h.clock.advance(h.settings.revocation_check_seconds)
    proof = await h.pass_challenge("alice", session="now")
    headers = {**h.as_user("alice", session="now"), "cookie": f"tfa_admin={proof}"}
    assert (await h.client.get("/admin/orders", headers=headers)).status_code == 200
    before = h.queries.count
    for _ in range(20):
        assert (await h.client.get("/admin/orders", headers=headers)).status_code == 200
    assert h.queries.count == before
    h.clock.advance(h.settings.revocation_check_seconds)
    assert (await h.client.get("/admin/orders", headers=headers)).status_code == 200
    assert h.queries.count == before + 1  # the generation and the revoked logins in one statement
