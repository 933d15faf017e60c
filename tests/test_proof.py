"""Requirements 11-15: the proof cookie's contents, binding, lifetime, keys and revocation."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import Response

from tests.harness import ADMIN_PHONE, OLD_SECRET, SECRET, T0, Harness
from tfa_middleware.proof import (
    CLOCK_SKEW_SECONDS,
    ProofCodec,
    proof_clear_cookie,
    proof_cookie_name,
    proof_set_cookie,
    session_digest,
)
from tfa_middleware.settings import Secret

NEW_SECRET = "newest-secret-key-0123456789-abcdefghijklm"
MAX_AGE = 3600


def codec(*keys: str, interface: str = "admin", max_age: int = MAX_AGE) -> ProofCodec:
    return ProofCodec(interface, [Secret(k) for k in keys or (SECRET,)], max_age)


def payload(value: str) -> Any:
    encoded = value.rsplit(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def contains_number(text: str, digits: str) -> bool:
    return re.search(rf"(?<!\d){re.escape(digits)}(?!\d)", text) is not None


# ---------------------------------------------------------------------- ProofCodec


def test_issue_then_read_round_trips() -> None:
    value = codec().issue("alice", 3, T0, "sms", "s1")
    proof = codec().read(value, T0 + 1)
    assert proof is not None
    assert (proof.interface, proof.user_id, proof.generation, proof.issued_at, proof.method) == (
        "admin",
        "alice",
        3,
        int(T0),
        "sms",
    )
    assert proof.session_digest == session_digest("s1") != ""
    assert "s1" not in json.dumps(payload(value))


def signed_payload(raw: list[Any], key: str = SECRET, interface: str = "admin") -> str:
    """A cookie signed with the real key over any payload (what only a holder of the key can make)."""
    from itsdangerous import Signer

    signer = Signer(key, salt=f"tfa-middleware.proof.{interface}", digest_method=hashlib.sha256)
    text = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=")
    return signer.sign(text).decode()


def test_the_proof_carries_the_sign_out_it_has_seen() -> None:
    proof = codec().read(codec().issue("alice", 3, T0, "sms", "s1", seen=T0 - 0.25), T0)
    assert proof is not None
    assert proof.seen == T0 - 0.25
    plain = codec().read(codec().issue("alice", 3, T0, "sms", "s1"), T0)
    assert plain is not None
    assert plain.seen == 0.0


def test_a_cookie_of_format_2_is_still_read_as_of_no_remembered_browser() -> None:
    old = signed_payload([2, "admin", "alice", 3, int(T0), "sms", session_digest("s1"), T0 - 5])
    proof = codec().read(old, T0 + 1)
    assert proof is not None
    assert (proof.user_id, proof.seen, proof.browser) == ("alice", T0 - 5, "")


def test_a_cookie_of_the_first_format_is_still_read_as_having_seen_nothing() -> None:
    # Issued before the upgrade: [1, interface, user, generation, issued_at, method, digest].
    old = signed_payload([1, "admin", "alice", 3, int(T0), "sms", session_digest("s1")])
    proof = codec().read(old, T0 + 1)
    assert proof is not None
    assert (proof.user_id, proof.generation, proof.seen) == ("alice", 3, 0.0)


@pytest.mark.parametrize(
    "raw",
    [
        [2, "admin", "alice", 3, int(T0), "sms", "", "later"],  # seen is not a number
        [2, "admin", "alice", 3, int(T0), "sms", "", None],
        [2, "admin", "alice", 3, int(T0), "sms", ""],  # format 2 without seen
        [1, "admin", "alice", 3, int(T0), "sms", "", 0.0],  # format 1 with it
        [3, "admin", "alice", 3, int(T0), "sms", "", 0.0],  # format 3 without browser
        [3, "admin", "alice", 3, int(T0), "sms", "", 0.0, None],  # browser is not text
        [4, "admin", "alice", 3, int(T0), "sms", "", 0.0, ""],  # a format we do not know
        [2, "customer", "alice", 3, int(T0), "sms", "", 0.0],
    ],
)
def test_a_genuine_signature_over_a_payload_of_another_shape_is_refused(raw: list[Any]) -> None:
    assert codec().read(signed_payload(raw), T0 + 1) is None


def _flip_last(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


def _forge(value: str, old: str, new: str) -> str:
    """The payload with ``old`` replaced by ``new``, under the original signature."""
    signature = value.rsplit(".", 1)[1]
    text = json.dumps(payload(value), separators=(",", ":")).replace(old, new)
    assert old in json.dumps(payload(value), separators=(",", ":"))
    forged = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    return f"{forged}.{signature}"


TAMPERINGS: dict[str, Callable[[str], str]] = {
    "signature flipped": _flip_last,
    "payload user swapped": lambda v: _forge(v, '"alice"', '"bob"'),
    "payload time moved": lambda v: _forge(v, str(int(T0)), str(int(T0) + 10 * MAX_AGE)),
    "payload first char": lambda v: ("B" if v[0] != "B" else "C") + v[1:],
    "truncated by one": lambda v: v[:-1],
    "signature cut off": lambda v: v.rsplit(".", 1)[0],
    "payload only dot": lambda v: v.rsplit(".", 1)[0] + ".",
    "halved": lambda v: v[: len(v) // 2],
    "empty": lambda _: "",
    "random bytes": lambda _: os.urandom(64).decode("latin-1"),
    "non-ascii": lambda v: "é" + v,
    "non-ascii signature": lambda v: v[:-1] + "é",
    "two signatures": lambda v: v + "." + v.rsplit(".", 1)[1],
    "oversized": lambda v: v + "A" * 5000,
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_values_never_verify_and_never_raise(tamper: Callable[[str], str]) -> None:
    reader = codec()
    value = codec().issue("alice", 1, T0, "sms", None)
    assert reader.read(value, T0) is not None  # the untouched value does verify
    assert reader.read(tamper(value), T0) is None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.from_regex(r"\A[A-Za-z0-9_\-]{0,120}\.[A-Za-z0-9_\-]{0,60}\Z"),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    )
)
def test_random_text_never_raises_and_never_verifies(value: str) -> None:
    assert codec().read(value, T0) is None


def test_lifetime_is_absolute_not_sliding() -> None:
    reader = codec(max_age=MAX_AGE)
    value = reader.issue("alice", 1, T0, "sms", None)
    for elapsed in (0, 600, 1800, 3000, MAX_AGE - 1):  # frequent use within the lifetime
        assert reader.read(value, T0 + elapsed) is not None
    assert reader.read(value, T0 + MAX_AGE) is None
    assert reader.read(value, T0 + MAX_AGE + 86400) is None


@pytest.mark.parametrize(
    ("ahead", "accepted"), [(CLOCK_SKEW_SECONDS, True), (CLOCK_SKEW_SECONDS + 1, False), (86400, False)]
)
def test_future_timestamp_is_refused_beyond_the_skew(ahead: int, accepted: bool) -> None:
    value = codec().issue("alice", 1, T0 + ahead, "sms", None)
    assert (codec().read(value, T0) is not None) is accepted


def test_admin_cookie_never_verifies_on_the_customer_interface() -> None:
    value = codec(interface="admin").issue("alice", 1, T0, "sms", None)
    assert codec(interface="customer").read(value, T0) is None
    assert codec(interface="admin").read(value, T0) is not None


def test_key_rotation_newest_signs_all_verify() -> None:
    old_value = codec(OLD_SECRET).issue("alice", 1, T0, "sms", None)
    rotating = codec(OLD_SECRET, NEW_SECRET)
    assert rotating.read(old_value, T0) is not None

    new_value = rotating.issue("alice", 1, T0, "sms", None)
    assert codec(NEW_SECRET).read(new_value, T0) is not None
    assert codec(OLD_SECRET).read(new_value, T0) is None
    assert codec(NEW_SECRET).read(old_value, T0) is None


@pytest.mark.parametrize("char", ["a", "é", "漢", "😀"], ids=["ascii", "latin", "cjk", "emoji"])
def test_cookie_fits_in_4096_bytes_for_the_longest_user_id(char: str) -> None:
    user_id = char * 255
    value = codec().issue(user_id, 2**31, T0, "sms", "s" * 1000)
    header = f"__Host-tfa_admin={value}; HttpOnly; Max-Age=43200; Path=/; SameSite=lax; Secure"
    assert len(header.encode()) <= 4096
    proof = codec().read(value, T0)
    assert proof is not None
    assert proof.user_id == user_id


# ---------------------------------------------------------------------- through the middleware


async def get(harness: Harness, path: str, user: str, session: str | None = None, **cookies: str) -> int:
    """A request carrying exactly ``cookies`` (the client's jar is emptied first)."""
    harness.client.cookies.clear()
    headers = harness.as_user(user, session)
    if cookies:
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return (await harness.client.get(path, headers=headers)).status_code


async def test_payload_holds_no_phone_code_or_other_personal_data(harness: Harness) -> None:
    alice = harness.as_user("alice", "shop-session-1")
    await harness.send(alice)
    code = await harness.latest_code()
    verified = await harness.verify(alice, code)
    value = verified.cookies["tfa_admin"]

    text = json.dumps(payload(value), ensure_ascii=False)
    for secret in (code, ADMIN_PHONE[1], ADMIN_PHONE[0] + ADMIN_PHONE[1]):
        assert not contains_number(text, secret), secret
        assert not contains_number(value, secret), secret
    assert "shop-session-1" not in text
    strings = [item for item in payload(value) if isinstance(item, str)]
    digest = session_digest("shop-session-1")
    assert sorted(strings) == sorted(["admin", "alice", "sms", digest, ""])  # "": no remembered browser


async def test_valid_proof_lets_its_user_in(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200


async def test_proof_of_one_user_does_not_let_another_in(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    assert await get(harness, "/admin/orders", "bob", tfa_admin=value) == 303


async def test_admin_proof_does_not_open_the_customer_interface(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    assert await get(harness, "/account/orders", "alice", tfa_customer=value) == 303
    assert await get(harness, "/account/orders", "alice", tfa_admin=value) == 303


async def test_proof_is_bound_to_the_shop_session(harness: Harness) -> None:
    value = await harness.pass_challenge("alice", session="s1")
    assert await get(harness, "/admin/orders", "alice", "s1", tfa_admin=value) == 200
    assert await get(harness, "/admin/orders", "alice", "s2", tfa_admin=value) == 303
    assert await get(harness, "/admin/orders", "alice", None, tfa_admin=value) == 303


async def test_proof_expires_by_the_clock(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    max_age = harness.settings.interface("admin").proof_max_age_seconds
    assert max_age == 12 * 3600
    harness.clock.advance(max_age - 1)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200
    harness.clock.advance(1)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 303


async def test_rotated_keys_keep_issued_cookies_valid(
    harness: Harness, make_harness: Callable[..., Any]
) -> None:
    value = await harness.pass_challenge("alice")  # signed with SECRET
    rotated = await make_harness(secret_keys=[SECRET, NEW_SECRET])  # same database
    assert await get(rotated, "/admin/orders", "alice", tfa_admin=value) == 200
    dropped = await make_harness(secret_keys=[NEW_SECRET])
    assert await get(dropped, "/admin/orders", "alice", tfa_admin=value) == 303


@pytest.fixture
async def https(harness: Harness) -> AsyncIterator[Harness]:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=harness.app), base_url="https://shop.test")
    async with client:
        yield dataclasses.replace(harness, client=client)


async def test_https_cookie_is_host_prefixed_secure_httponly_lax(https: Harness) -> None:
    alice = https.as_user("alice")
    await https.send(alice)
    verified = await https.verify(alice, await https.latest_code())
    assert verified.status_code == 303
    [set_cookie] = verified.headers.get_list("set-cookie")
    name, _, rest = set_cookie.partition("=")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in rest.split(";")[1:]}
    assert name == "__Host-tfa_admin"
    assert {"secure", "httponly", "path", "samesite"} <= attributes.keys()
    assert attributes["path"] == "Path=/"
    assert attributes["samesite"].lower() == "samesite=lax"
    assert "domain" not in attributes
    assert len(set_cookie.encode()) <= 4096

    assert (await https.client.get("/admin/orders", headers=alice)).status_code == 200


async def test_plain_named_cookie_is_ignored_on_https(https: Harness) -> None:
    alice = https.as_user("alice")
    await https.send(alice)
    verified = await https.verify(alice, await https.latest_code())
    value = verified.cookies["__Host-tfa_admin"]
    assert await get(https, "/admin/orders", "alice", **{"__Host-tfa_admin": value}) == 200
    assert await get(https, "/admin/orders", "alice", tfa_admin=value) == 303


async def test_host_prefixed_cookie_is_ignored_on_plain_http(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    assert await get(harness, "/admin/orders", "alice", **{"__Host-tfa_admin": value}) == 303


async def test_longest_user_id_gets_a_cookie_that_fits(https: Harness) -> None:
    user = "u" * 255
    await https.service.set_phone("admin", user, "1", "2015550126", confirmed=True)
    headers = https.as_user(user, "s" * 200)
    await https.send(headers)
    verified = await https.verify(headers, await https.latest_code())
    assert verified.status_code == 303
    assert len(verified.headers["set-cookie"].encode()) <= 4096
    assert (await https.client.get("/admin/orders", headers=headers)).status_code == 200


# ---------------------------------------------------------------------- logout and revocation


async def test_logout_drops_the_cookie_and_the_next_request_is_challenged(harness: Harness) -> None:
    alice = harness.as_user("alice")
    token = await harness.csrf(alice)  # taken before the proof exists: with one, the page redirects
    await harness.pass_challenge("alice")
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 200

    response = await harness.client.post("/admin/_2fa/logout", data={"csrf_token": token}, headers=alice)
    assert response.status_code == 303
    assert "tfa_admin=" in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert "tfa_admin" not in harness.client.cookies
    assert (await harness.client.get("/admin/orders", headers=alice)).status_code == 303


async def test_logout_revokes_a_copy_of_the_cookie(harness: Harness) -> None:
    """Requirement 15 names logout among the revocations: a copy of the cookie taken before the
    logout (another tab, a stolen value) must stop working within the revocation interval."""
    alice = harness.as_user("alice")
    token = await harness.csrf(alice)
    value = await harness.pass_challenge("alice")
    logout = await harness.client.post("/admin/_2fa/logout", data={"csrf_token": token}, headers=alice)
    assert logout.status_code == 303
    harness.clock.advance(harness.settings.revocation_check_seconds)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 303


async def _reset(h: Harness) -> None:
    await h.service.reset("admin", "alice")


async def _require_enrollment(h: Harness) -> None:
    await h.service.require_enrollment("admin", "alice")


async def _new_phone(h: Harness) -> None:
    await h.service.set_phone("admin", "alice", "1", "2015550199", confirmed=True)


REVOCATIONS = {"reset": _reset, "require_enrollment": _require_enrollment, "phone change": _new_phone}


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=REVOCATIONS.keys())
async def test_revocation_takes_effect_within_the_check_interval(
    harness: Harness, revoke: Callable[[Harness], Any]
) -> None:
    interval = harness.settings.revocation_check_seconds
    assert interval == 10
    value = await harness.pass_challenge("alice")
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200  # warms the cache
    await revoke(harness)
    # The honest bound: while the cached generation is fresh, the old cookie still works...
    harness.clock.advance(interval - 1)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200
    # ...and once it is older than the interval, the revocation is seen.
    harness.clock.advance(1)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 303
    harness.clock.advance(interval)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 303


async def test_confirming_the_same_phone_again_revokes_nothing(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    harness.clock.advance(harness.settings.revocation_check_seconds + 1)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200


async def test_valid_proof_costs_no_query_while_the_cache_is_warm(harness: Harness) -> None:
    value = await harness.pass_challenge("alice")
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200
    before = harness.queries.count
    for _ in range(50):
        assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200
    assert harness.queries.count == before

    harness.clock.advance(harness.settings.revocation_check_seconds)
    assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200
    assert harness.queries.count == before + 1
    for _ in range(5):
        assert await get(harness, "/admin/orders", "alice", tfa_admin=value) == 200
    assert harness.queries.count == before + 1


async def test_fresh_proof_with_a_newer_generation_is_accepted_at_once(harness: Harness) -> None:
    alice = harness.as_user("alice")
    old = await harness.pass_challenge("alice")
    assert await get(harness, "/admin/orders", "alice", tfa_admin=old) == 200  # caches the generation

    await harness.service.reset("admin", "alice")
    harness.client.cookies.clear()
    token = await harness.csrf(alice, "/admin/_2fa/enroll")
    enrolled = await harness.client.post(
        "/admin/_2fa/enroll",
        data={"csrf_token": token, "country_code": "1", "phone": "2015550199"},
        headers=alice,
    )
    assert enrolled.status_code == 303
    verified = await harness.verify(alice, await harness.latest_code())
    assert verified.status_code == 303
    new = verified.cookies["tfa_admin"]
    reader = codec(max_age=harness.settings.interface("admin").proof_max_age_seconds)
    new_proof, old_proof = reader.read(new, harness.clock()), reader.read(old, harness.clock())
    assert new_proof is not None
    assert old_proof is not None
    assert new_proof.generation > old_proof.generation

    # No clock movement: the cache still holds the old generation, yet the new proof works now...
    assert await get(harness, "/admin/orders", "alice", tfa_admin=new) == 200
    # ...and having looked, the middleware refuses the old one at once.
    assert await get(harness, "/admin/orders", "alice", tfa_admin=old) == 303


# ---------------------------------------------------------------------- the Set-Cookie values


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_the_set_cookie_values_say_what_starlettes_cookie_methods_say(https: bool) -> None:
    # The pages and the shop-logout hook write these by hand: they must mean what
    # Response.set_cookie and delete_cookie with our attributes mean (the pages used those once).
    name = proof_cookie_name("tfa_admin", https)
    assert name == ("__Host-tfa_admin" if https else "tfa_admin")
    value = codec().issue("alice", 3, T0, "sms", "s1")
    attributes: dict[str, Any] = {"path": "/", "secure": https, "httponly": True, "samesite": "lax"}
    starlette = Response()
    starlette.set_cookie(name, value, max_age=MAX_AGE, **attributes)
    starlette.delete_cookie(name, **attributes)
    set_value, delete_value = starlette.headers.getlist("set-cookie")

    def without_expires(header: str) -> list[str]:
        return [part for part in header.split("; ") if not part.startswith("expires=")]

    assert proof_set_cookie(name, value, MAX_AGE, https) == set_value
    cleared = proof_clear_cookie(name, https)
    assert without_expires(cleared) == without_expires(delete_value)
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in cleared  # a constant, in the past
