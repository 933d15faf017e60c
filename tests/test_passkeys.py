"""Passkeys (issue 16) through the service, on SQLite and PostgreSQL: added and used, and every
refusal: a replayed, expired or voided challenge, a wrong origin or RP ID, a credential of another
user or interface, a counter that goes back, a credential id registered twice, a bad signature.

The answers are built by hand by a software authenticator (tests/authenticator.py: the spec's
formats, an ES256 key from ``cryptography``), so each test changes the one part it is about.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from tests.authenticator import ORIGIN, SoftAuthenticator, b64, passkey_interfaces, unb64
from tests.factors import make_service
from tests.harness import FakeClock
from tfa_middleware import TwoFactor
from tfa_middleware.errors import InvalidInput
from tfa_middleware.factors.passkeys import CHALLENGE_SECONDS
from tfa_middleware.service import VerifyStatus
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import Store
from tfa_middleware.store import events as event_rows
from tfa_middleware.tables import factors

RELAXED = LimitSettings().model_copy(update={"verify_max_failures": 20, "verify_delay_base_seconds": 0.0})


def service(store: Store, tmp_path: Path, clock: FakeClock, **admin: Any) -> TwoFactor:
    return make_service(store, tmp_path, clock, limits=RELAXED, interfaces=passkey_interfaces(**admin))


async def add(tfa: TwoFactor, user: str, key: SoftAuthenticator, interface: str = "admin") -> None:
    options = await tfa.factors.passkey_creation_options(interface, user)
    outcome = await tfa.factors.add_passkey(interface, user, key.create(options, ORIGIN), label="Laptop")
    assert outcome.status is VerifyStatus.APPROVED, outcome


async def sign_in(tfa: TwoFactor, user: str, key: SoftAuthenticator, **changes: Any) -> VerifyStatus:
    options = await tfa.factors.passkey_request_options("admin", user)
    assert options is not None
    changes = dict(changes)  # a parameter's dict is shared by the SQLite and PostgreSQL runs
    answer = key.get(options, changes.pop("origin", ORIGIN), **changes)
    return (await tfa.verify_code("admin", user, answer, factor="webauthn")).status


async def reasons(tfa: TwoFactor, user: str = "alice") -> list[str]:
    events = await event_rows.latest(tfa.store, "admin", user, limit=50)
    return [(e.detail or {}).get("reason", "") for e in events if e.kind == "verify_failed"]


async def test_a_passkey_is_added_and_signs_the_user_in(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = service(store, tmp_path, clock)
    key = SoftAuthenticator()
    options = json.loads(await tfa.factors.passkey_creation_options("admin", "alice"))
    assert options["rp"]["id"] == "shop.test"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["user"]["name"] == "alice"
    assert "alice" not in unb64(options["user"]["id"]).decode("latin-1")  # the handle names nobody
    await add(tfa, "alice", key)
    status = await tfa.status("admin", "alice")
    assert status.usable == ("webauthn",)
    assert not status.needs_enrollment
    request = json.loads(await tfa.factors.passkey_request_options("admin", "alice") or "")
    assert request["rpId"] == "shop.test"
    assert [c["id"] for c in request["allowCredentials"]] == [b64(key.credential_id)]
    assert request["userVerification"] == "preferred"
    clock.advance(1)
    assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED
    kinds = [e.kind for e in await event_rows.latest(tfa.store, "admin", "alice", limit=10)]
    assert kinds[-2:] == ["passkey_added", "verify_ok"]
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(factors).where(factors.c.kind == "webauthn"))).one()
    assert row.label == "Laptop"
    assert row.counter == 1
    stored = json.loads(row.credential)
    assert stored["id"] == b64(key.credential_id)
    assert stored["transports"] == ["internal"]
    # A second passkey's options exclude the first: the same authenticator is not added twice.
    again = json.loads(await tfa.factors.passkey_creation_options("admin", "alice"))
    assert [c["id"] for c in again["excludeCredentials"]] == [b64(key.credential_id)]


async def test_a_challenge_works_once(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    key = SoftAuthenticator()
    await add(tfa, "alice", key)
    options = await tfa.factors.passkey_request_options("admin", "alice")
    assert options is not None
    first = key.get(options, ORIGIN)
    assert (await tfa.verify_code("admin", "alice", first, factor="webauthn")).status is VerifyStatus.APPROVED
    replayed = key.get(options, ORIGIN)  # the same challenge, signed again with a higher counter
    assert (await tfa.verify_code("admin", "alice", replayed, factor="webauthn")).status is (
        VerifyStatus.REJECTED
    )
    assert (await tfa.verify_code("admin", "alice", first, factor="webauthn")).status is VerifyStatus.REJECTED
    assert await reasons(tfa) == ["challenge not live", "challenge not live"]


async def test_a_registration_challenge_works_once_too(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    options = await tfa.factors.passkey_creation_options("admin", "alice")
    await tfa.factors.add_passkey("admin", "alice", SoftAuthenticator().create(options, ORIGIN))
    second = await tfa.factors.add_passkey("admin", "alice", SoftAuthenticator().create(options, ORIGIN))
    assert second.status is VerifyStatus.REJECTED
    assert len(await tfa.factors.passkeys.of_user("admin", "alice")) == 1


async def test_an_expired_or_replaced_challenge_is_refused(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    tfa = service(store, tmp_path, clock)
    key = SoftAuthenticator()
    await add(tfa, "alice", key)
    old = await tfa.factors.passkey_request_options("admin", "alice")
    assert old is not None
    clock.advance(CHALLENGE_SECONDS + 1)
    assert (await tfa.verify_code("admin", "alice", key.get(old, ORIGIN), factor="webauthn")).status is (
        VerifyStatus.REJECTED
    )
    replaced = await tfa.factors.passkey_request_options("admin", "alice")
    assert replaced is not None
    await tfa.factors.passkey_request_options("admin", "alice")  # a newer one voids it
    assert (await tfa.verify_code("admin", "alice", key.get(replaced, ORIGIN), factor="webauthn")).status is (
        VerifyStatus.REJECTED
    )
    # A challenge made up by the browser is no challenge.
    made_up = key.get(replaced, ORIGIN, challenge=b64(b"\0" * 32))
    assert (await tfa.verify_code("admin", "alice", made_up, factor="webauthn")).status is (
        VerifyStatus.REJECTED
    )
    assert await reasons(tfa) == ["challenge not live"] * 3
    assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"origin": "https://shop.test.evil.example"}, "origin"),
        ({"origin": "http://shop.test"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID"),
        ({"signer": ec.generate_private_key(ec.SECP256R1())}, "signature"),
    ],
    ids=["phishing-origin", "http-origin", "rp-id", "another-key"],
)
async def test_a_wrong_origin_rp_id_or_key_is_refused(
    store: Store, tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    tfa = service(store, tmp_path, FakeClock())
    key = SoftAuthenticator()
    await add(tfa, "alice", key)
    assert await sign_in(tfa, "alice", key, **change) is VerifyStatus.REJECTED
    assert reason in (await reasons(tfa))[0]
    assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED


@pytest.mark.parametrize(
    "change", [{"origin": "https://evil.example"}, {"rp_id": "evil.example"}], ids=["origin", "rp-id"]
)
async def test_a_registration_from_a_wrong_origin_or_rp_id_stores_nothing(
    store: Store, tmp_path: Path, change: dict[str, Any]
) -> None:
    tfa = service(store, tmp_path, FakeClock())
    options = await tfa.factors.passkey_creation_options("admin", "alice")
    answer = SoftAuthenticator().create(
        options, change.get("origin", ORIGIN), rp_id=change.get("rp_id"), challenge=None
    )
    assert (await tfa.factors.add_passkey("admin", "alice", answer)).status is VerifyStatus.REJECTED
    assert await tfa.factors.passkeys.of_user("admin", "alice") == []


async def test_another_users_or_interfaces_passkey_is_refused(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    alices, bobs = SoftAuthenticator(), SoftAuthenticator()
    await add(tfa, "alice", alices)
    await add(tfa, "bob", bobs)
    await add(tfa, "alice", customer_key := SoftAuthenticator(), interface="customer")
    # Alice's challenge answered with Bob's passkey (a stolen or shared authenticator).
    assert await sign_in(tfa, "alice", bobs) is VerifyStatus.REJECTED
    # Alice's customer passkey on the admin interface (same user id, same RP ID).
    assert await sign_in(tfa, "alice", customer_key) is VerifyStatus.REJECTED
    assert await reasons(tfa) == ["not a passkey of this user"] * 2
    assert await sign_in(tfa, "alice", alices) is VerifyStatus.APPROVED


async def test_a_credential_id_is_registered_once(store: Store, tmp_path: Path) -> None:
    """A second registration of one credential id (WebAuthn asks the relying party to refuse it;
    with no attestation, anybody can claim any id with a key of their own)."""
    tfa = service(store, tmp_path, FakeClock())
    key = SoftAuthenticator()
    await add(tfa, "alice", key)
    impostor = SoftAuthenticator(credential_id=key.credential_id)
    options = await tfa.factors.passkey_creation_options("admin", "bob")
    outcome = await tfa.factors.add_passkey("admin", "bob", impostor.create(options, ORIGIN))
    assert outcome.status is VerifyStatus.REJECTED
    assert await reasons(tfa, "bob") == ["credential registered already"]
    assert await tfa.factors.passkeys.of_user("admin", "bob") == []
    assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED


async def test_a_counter_that_goes_back_is_refused_and_audited(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    key = SoftAuthenticator(counter=10)
    await add(tfa, "alice", key)
    assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED  # 11
    assert await sign_in(tfa, "alice", key, counter=11) is VerifyStatus.REJECTED  # not above
    assert await sign_in(tfa, "alice", key, counter=5) is VerifyStatus.REJECTED  # a clone's
    events = await event_rows.latest(tfa.store, "admin", "alice", limit=20)
    regressed = [e.detail or {} for e in events if e.kind == "passkey_counter_regressed"]
    assert [(d["counter"], d["stored"]) for d in regressed] == [("11", "11"), ("5", "11")]
    assert await reasons(tfa) == ["sign counter went back"] * 2
    assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED  # 12


async def test_an_authenticator_without_a_counter_keeps_working(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    key = SoftAuthenticator(step=0)
    await add(tfa, "alice", key)
    for _ in range(3):
        assert await sign_in(tfa, "alice", key) is VerifyStatus.APPROVED


async def test_parallel_answers_to_one_challenge_admit_one(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    key = SoftAuthenticator()
    await add(tfa, "alice", key)
    options = await tfa.factors.passkey_request_options("admin", "alice")
    assert options is not None
    answers = [key.get(options, ORIGIN) for _ in range(6)]
    outcomes = await asyncio.gather(
        *(tfa.verify_code("admin", "alice", answer, factor="webauthn") for answer in answers)
    )
    statuses = [o.status for o in outcomes]
    assert statuses.count(VerifyStatus.APPROVED) == 1, statuses


async def test_garbage_is_refused_and_counted(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock())
    await add(tfa, "alice", SoftAuthenticator())
    for garbage in ("{", "[]", '{"id": "x"}', json.dumps({"id": "!!", "rawId": "!!", "response": {}})):
        outcome = await tfa.verify_code("admin", "alice", garbage, factor="webauthn")
        assert outcome.status is VerifyStatus.REJECTED, garbage
    assert (await tfa.verify_code("admin", "alice", " ", factor="webauthn")).status is VerifyStatus.MALFORMED
    assert len(await reasons(tfa)) == 4


async def test_passkeys_only_where_the_interface_allows_them(store: Store, tmp_path: Path) -> None:
    tfa = service(store, tmp_path, FakeClock(), factors=["totp", "sms"])
    with pytest.raises(InvalidInput, match="webauthn is not one of the factors"):
        await tfa.factors.passkey_creation_options("admin", "alice")
    with pytest.raises(InvalidInput):
        await tfa.verify_code("admin", "alice", "{}", factor="webauthn")


async def test_the_last_way_in_stays_unless_a_manager_removes_it(store: Store, tmp_path: Path) -> None:
    from tfa_middleware.service import RequestInfo

    tfa = service(store, tmp_path, FakeClock())
    await add(tfa, "alice", SoftAuthenticator())
    (passkey,) = await tfa.factors.passkeys.of_user("admin", "alice")
    with pytest.raises(InvalidInput, match="only way to sign in"):
        await tfa.factors.remove("admin", "alice", passkey.id)
    manager = RequestInfo("203.0.113.9", "test", actor="admin/1")
    removed = await tfa.factors.remove("admin", "alice", passkey.id, request=manager)
    assert removed is not None
    assert removed.kind == "webauthn"
    assert await tfa.factors.passkey_request_options("admin", "alice") is None
    events = await event_rows.latest(tfa.store, "admin", "alice", limit=5)
    assert events[-1].kind == "factor_removed"
    assert events[-1].detail == {"factor": "webauthn", "factor_id": str(passkey.id), "by": "admin/1"}


# ---------------------------------------------------------------------------- the settings


def _settings(tmp_path: Path, **admin: Any) -> Any:
    from tests.harness import config
    from tfa_middleware import settings_from_mapping

    return settings_from_mapping(config(tmp_path, interfaces=passkey_interfaces(**admin)))


@pytest.mark.parametrize(
    ("admin", "problem"),
    [
        ({"rp_id": "127.0.0.1"}, "interfaces.admin.rp_id: must be a domain name like shop.example"),
        ({"rp_id": "https://shop.test"}, "interfaces.admin.rp_id: must be a domain name"),
        (
            {"origins": ["http://shop.test"]},
            "interfaces.admin.origins[0]: 'http://shop.test': passkeys need https",
        ),
        (
            {"origins": ["https://shop.test", "https://evil.example"]},
            "interfaces.admin.origins[1]: 'https://evil.example' is not on rp_id 'shop.test'",
        ),
        (
            {"origins": ["https://shop.test/admin"]},
            "interfaces.admin.origins[0]: 'https://shop.test/admin' is an origin, without a path",
        ),
        ({"origins": ["shop.test"]}, "interfaces.admin.origins[0]: 'shop.test' is not an origin"),
        (
            {"origins": ["https://shop.test:99999"]},
            "interfaces.admin.origins[0]: 'https://shop.test:99999' is not an origin",
        ),
        ({"factors": ["recovery"]}, "allow webauthn, totp or sms too"),
        ({"require_factors": ["webauthn"], "factors": ["totp", "sms"]}, "'webauthn' is not in factors"),
    ],
    ids=[
        "ip",
        "url",
        "http",
        "elsewhere",
        "path",
        "no-scheme",
        "port",
        "recovery-alone",
        "required-not-allowed",
    ],
)
def test_passkey_settings_are_checked_with_their_key_path(
    tmp_path: Path, admin: dict[str, Any], problem: str
) -> None:
    from tfa_middleware import ConfigError

    with pytest.raises(ConfigError) as exc:
        _settings(tmp_path, **admin)
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_origins_are_read_as_browsers_write_them(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, rp_id="Shop.Test", origins=["https://SHOP.test:443/", "https://admin.shop.test:8443"]
    )
    assert settings.interfaces["admin"].rp_id == "shop.test"
    assert settings.interfaces["admin"].origins == ("https://shop.test", "https://admin.shop.test:8443")
    assert settings.interfaces["customer"].origins == ("https://shop.test",)  # the default for an rp_id
    demo = _settings(tmp_path, rp_id="localhost")
    assert demo.interfaces["admin"].origins == ("http://localhost:8000",)


def test_production_refuses_the_demos_localhost(tmp_path: Path) -> None:
    from tests.harness import config
    from tfa_middleware import ConfigError, settings_from_mapping

    production = {"name": "authy", "production_mode": True, "api_key": "k" * 32}
    data = config(tmp_path, provider=production, interfaces=passkey_interfaces(rp_id="localhost"))
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert (
        "interfaces.admin.rp_id: set it to the shop's domain (localhost is for the demo)"
        in exc.value.problems
    )


def test_webauthn_without_py_webauthn_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from tfa_middleware import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "webauthn" else real(name, *a)
    )
    with pytest.raises(ConfigError) as exc:
        _settings(tmp_path)
    assert (
        "interfaces.admin.factors: webauthn needs py_webauthn: pip install 'tfa-middleware[passkeys]'"
        in exc.value.problems
    )
