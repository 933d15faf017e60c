"""The service's side of the provider contract: registration, re-registration, key changes.

A provider that needs registration (as Authy does) is written here in a few lines: it keeps its
users and codes in dictionaries and can be told to forget a user.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import RELAXED_LIMITS, FakeClock, Harness, config
from tfa_middleware import TwoFactor, settings_from_mapping
from tfa_middleware.errors import (
    ProviderBlocked,
    ProviderRateLimited,
    ProviderUnavailable,
    ProviderUserNotFound,
)
from tfa_middleware.providers.base import CheckResult, SendResult, Target
from tfa_middleware.service import VerifyStatus
from tfa_middleware.store import Store
from tfa_middleware.store import enrollments as enrollment_rows
from tfa_middleware.store import meta as meta_rows


class RegisteringProvider:
    name = "registering"
    supports_call = False
    needs_registration = True
    code_lengths = (6, 6)

    def __init__(self, fingerprint: str | None = "account-1") -> None:
        self.fingerprint = fingerprint
        self.users: dict[str, str] = {}  # provider id -> phone
        self.registrations: list[str] = []
        self.sent: list[tuple[str, str]] = []  # (provider id, phone)

    async def register(self, target: Target) -> str | None:
        provider_id = f"p{len(self.registrations) + 1}"
        self.users[provider_id] = target.phone
        self.registrations.append(target.phone)
        return provider_id

    async def send(self, target: Target, channel: str) -> SendResult:
        if target.provider_user_id not in self.users:
            raise ProviderUserNotFound("60026 User not found.")
        assert self.users[target.provider_user_id] == target.phone
        self.sent.append((target.provider_user_id, target.phone))
        return SendResult(channel)

    async def check(self, target: Target, code: str) -> CheckResult:
        if target.provider_user_id not in self.users:
            raise ProviderUserNotFound("60026 User not found.")
        return CheckResult.APPROVED if code == "123456" else CheckResult.REJECTED

    async def close(self) -> None:
        return None


def service_with(tmp_path: Path, provider: RegisteringProvider) -> TwoFactor:
    settings = settings_from_mapping(config(tmp_path)).model_copy(update={"limits": RELAXED_LIMITS})
    return TwoFactor(settings, Store(settings.database_url.reveal()), provider, clock=FakeClock())


async def test_users_are_registered_once_and_the_id_is_kept(tmp_path: Path) -> None:
    provider = RegisteringProvider()
    tfa = service_with(tmp_path, provider)
    try:
        await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
        await tfa.send_code("admin", "alice")
        await tfa.send_code("admin", "alice")
        assert provider.registrations == ["+12015550123"]
        row = await enrollment_rows.get(tfa.store, "admin", "alice")
        assert row is not None
        assert row.provider_user_id == "p1"
        assert provider.sent == [("p1", "+12015550123"), ("p1", "+12015550123")]
    finally:
        await tfa.close()


async def test_a_forgotten_user_is_registered_again_and_the_call_repeated(tmp_path: Path) -> None:
    provider = RegisteringProvider()
    tfa = service_with(tmp_path, provider)
    try:
        await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
        await tfa.send_code("admin", "alice")
        provider.users.clear()  # deleted on the provider's side
        await tfa.send_code("admin", "alice")
        assert provider.sent[-1] == ("p2", "+12015550123")
        row = await enrollment_rows.get(tfa.store, "admin", "alice")
        assert row is not None
        assert row.provider_user_id == "p2"
        provider.users.clear()
        outcome = await tfa.verify_code("admin", "alice", "123456")
        assert outcome.status is VerifyStatus.APPROVED
    finally:
        await tfa.close()


async def test_a_new_number_gets_its_own_id_which_becomes_active_when_confirmed(tmp_path: Path) -> None:
    provider = RegisteringProvider()
    tfa = service_with(tmp_path, provider)
    try:
        await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
        await tfa.send_code("admin", "alice")
        await tfa.require_enrollment("admin", "alice")
        await tfa.begin_enrollment("admin", "alice", "1", "2015550199")
        await tfa.send_code("admin", "alice")
        assert provider.sent[-1] == ("p2", "+12015550199")
        row = await enrollment_rows.get(tfa.store, "admin", "alice")
        assert row is not None
        assert (row.provider_user_id, row.pending_provider_user_id) == ("p1", "p2")
        assert (await tfa.verify_code("admin", "alice", "123456")).status is VerifyStatus.APPROVED
        row = await enrollment_rows.get(tfa.store, "admin", "alice")
        assert row is not None
        assert (row.phone, row.provider_user_id, row.pending_provider_user_id) == ("+12015550199", "p2", None)
    finally:
        await tfa.close()


async def test_changed_credentials_clear_every_stored_provider_id(tmp_path: Path) -> None:
    first = RegisteringProvider(fingerprint="account-1")
    tfa = service_with(tmp_path, first)
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    await tfa.send_code("admin", "alice")
    await tfa.close()

    same = RegisteringProvider(fingerprint="account-1")
    same.users["p1"] = "+12015550123"
    tfa = service_with(tmp_path, same)
    await tfa.send_code("admin", "alice")
    assert same.registrations == []  # same account: the stored id is still good
    await tfa.close()

    other = RegisteringProvider(fingerprint="account-2")
    tfa = service_with(tmp_path, other)
    try:
        await tfa.send_code("admin", "alice")
        assert other.registrations == ["+12015550123"]  # registered afresh with the new account
        assert await meta_rows.get(tfa.store, "provider_fingerprint") == "account-2"
    finally:
        await tfa.close()


async def test_after_a_key_change_the_first_call_never_uses_an_old_id(tmp_path: Path) -> None:
    first = RegisteringProvider(fingerprint="account-1")
    tfa = service_with(tmp_path, first)
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    await tfa.send_code("admin", "alice")
    await tfa.close()

    # The new account happens to know an id "p1" too: someone else's. The very first send after
    # the key change must not go there (RegisteringProvider.send asserts the phone matches).
    other = RegisteringProvider(fingerprint="account-2")
    other.users["p1"] = "+12015559999"
    tfa = service_with(tmp_path, other)
    try:
        await tfa.send_code("admin", "alice")
        assert other.registrations == ["+12015550123"]
        assert other.sent == [("p1", "+12015550123")]  # p1 re-registered for alice, not the stranger's
    finally:
        await tfa.close()


class RefusingProvider(RegisteringProvider):
    """A provider that refuses to send, with the error given."""

    def __init__(self, error: Exception) -> None:
        super().__init__(fingerprint=None)
        self.needs_registration = False
        self.error = error

    async def send(self, target: Target, channel: str) -> SendResult:  # noqa: ARG002 (the contract's signature)
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (ProviderBlocked("60605 geo permissions"), 400, "refuses to send codes to this number"),
        (ProviderRateLimited("60203", retry_after_seconds=40), 503, "please try again in 40 seconds"),
        (ProviderRateLimited("503 from Authy"), 503, "please try again in a minute"),
        (ProviderUnavailable("timed out"), 503, "send a code right now. Nobody can sign in without it"),
    ],
)
async def test_a_provider_refusal_gets_a_page_that_says_what_happened(
    harness: Harness, error: Exception, status: int, text: str
) -> None:
    harness.service.provider = RefusingProvider(error)
    response = await harness.send(harness.as_user("alice"))
    assert response.status_code == status
    assert text in response.text
    assert "Traceback" not in response.text
    assert (await harness.client.get("/admin/orders", headers=harness.as_user("alice"))).status_code == 303
