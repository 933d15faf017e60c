"""What a verify and a send cost the database, counted: the connections they take from the pool
(each a transaction, or statements that commit alone) and the statements they run, on SQLite and
PostgreSQL. A verify is two short transactions around the provider call, and no transaction is
open while the provider works; a count that grows fails here instead of only in the benchmarks.

Counts, not timings: these hold on any machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.codes import latest_code
from tests.harness import FakeClock, config
from tfa_middleware import ProviderUnavailable, TwoFactor, settings_from_mapping
from tfa_middleware.providers.base import CheckResult, SendResult, Target
from tfa_middleware.providers.sandbox import SandboxProvider
from tfa_middleware.service import Purpose, SendStatus, VerifyStatus
from tfa_middleware.settings import LimitSettings
from tfa_middleware.store import Store
from tfa_middleware.store.driver import Connection

RIGHT = "123456"


@dataclass
class Tally:
    """Connections taken (by the Store's three ways in) and statements run, as they happen."""

    ways: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    open: int = 0  # connections held right now
    during_provider: list[int] = field(default_factory=list)  # `open` whenever the provider ran

    def reset(self) -> None:
        self.ways.clear()
        self.statements.clear()

    def verbs(self) -> list[str]:
        return [s.split(None, 1)[0].upper() for s in self.statements]


def counted(tally: Tally, name: str, way: Callable[[], AbstractAsyncContextManager[Connection]]) -> Any:
    @asynccontextmanager
    async def wrapper() -> AsyncIterator[Connection]:
        tally.ways.append(name)
        tally.open += 1
        try:
            async with way() as conn:
                yield conn
        finally:
            tally.open -= 1

    return wrapper


@pytest.fixture
def tally(store: Store, monkeypatch: pytest.MonkeyPatch) -> Tally:
    found = Tally()
    for name in ("transaction", "statement", "reading"):
        monkeypatch.setattr(store, name, counted(found, name, getattr(store, name)))

    def heard(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        found.statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", heard)
    return found


class Gateway:
    """A provider with no database of its own (as Authy's and Twilio's): ``RIGHT`` is the code.
    It notes how many of the store's connections are held each time it is called."""

    name = "gateway"
    supports_call = False
    needs_registration = False
    code_lengths = (6, 6)
    fingerprint = None

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.down = False

    async def register(self, target: Target) -> str | None:
        del target
        return None

    async def send(self, target: Target, channel: str) -> SendResult:
        del target
        self.tally.during_provider.append(self.tally.open)
        if self.down:
            raise ProviderUnavailable("timed out")
        return SendResult(channel=channel)

    async def check(self, target: Target, code: str) -> CheckResult:
        del target
        self.tally.during_provider.append(self.tally.open)
        if self.down:
            raise ProviderUnavailable("timed out")
        return CheckResult.APPROVED if code == RIGHT else CheckResult.REJECTED

    async def close(self) -> None:
        return None


def postgresql(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


def service(store: Store, tmp_path: Path, provider: Any) -> TwoFactor:
    clock = FakeClock()
    limits = LimitSettings().model_copy(update={"verify_delay_base_seconds": 0.0})
    settings = settings_from_mapping(config(tmp_path)).model_copy(update={"limits": limits})
    return TwoFactor(settings, store, provider, clock=clock)


async def alice_with_a_phone(store: Store, tmp_path: Path, provider: Any) -> TwoFactor:
    """The service on ``provider``, alice's phone active, and nothing counted yet."""
    tfa = service(store, tmp_path, provider)
    await tfa.set_phone("admin", "alice", "1", "2015550123", confirmed=True)
    return tfa


async def test_a_login_verify_is_two_transactions_around_the_provider_call(
    store: Store, tmp_path: Path, tally: Tally
) -> None:
    gateway = Gateway(tally)
    tfa = await alice_with_a_phone(store, tmp_path, gateway)
    tally.reset()
    assert (await tfa.verify_code("admin", "alice", RIGHT)).status is VerifyStatus.APPROVED
    # The attempt reserved and the enrollment read in one statement; then the outcome, all or
    # nothing: the failures wiped with the sign-in time, the phone's last use, the event. On
    # PostgreSQL that is one statement too (a data-modifying WITH), on SQLite a transaction.
    if postgresql(store):
        assert tally.ways == ["statement", "statement"]
        assert tally.verbs() == ["UPDATE", "WITH"]
    else:
        assert tally.ways == ["statement", "transaction"]
        assert tally.verbs() == ["UPDATE", "UPDATE", "UPDATE", "INSERT"]
    assert tally.during_provider == [0]


async def test_a_wrong_code_a_lock_and_a_provider_failure_are_two_each(
    store: Store, tmp_path: Path, tally: Tally
) -> None:
    gateway = Gateway(tally)
    tfa = await alice_with_a_phone(store, tmp_path, gateway)
    for attempt in range(5):
        tally.reset()
        outcome = await tfa.verify_code("admin", "alice", "654321")
        if attempt < 4:
            assert tally.ways == ["statement", "statement"]
            assert tally.verbs() == ["UPDATE", "INSERT"]
    # The fifth failure: whether its lock still holds (a right code beside it may have wiped it),
    # then its event and the lock's, together.
    assert tally.ways == ["statement", "transaction"]
    assert tally.verbs() == ["UPDATE", "SELECT", "INSERT"]
    assert outcome.status is VerifyStatus.LOCKED
    tally.reset()
    assert (await tfa.verify_code("admin", "alice", RIGHT)).status is VerifyStatus.LOCKED
    assert tally.verbs() == ["UPDATE", "SELECT"]  # refused, and why, on the same connection
    assert tally.ways == ["statement"]

    await tfa.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    gateway.down = True
    tally.reset()
    with pytest.raises(ProviderUnavailable):
        await tfa.verify_code("admin", "bob", RIGHT)
    assert tally.ways == ["statement", "transaction"]  # the attempt given back with its event
    assert tally.verbs() == ["UPDATE", "UPDATE", "INSERT"]
    assert set(tally.during_provider) == {0}


async def test_confirming_a_new_phone_is_two_transactions_too(
    store: Store, tmp_path: Path, tally: Tally
) -> None:
    tfa = service(store, tmp_path, Gateway(tally))
    await tfa.set_phone("admin", "alice", "1", "2015550123")  # pending
    tally.reset()
    outcome = await tfa.verify_code("admin", "alice", RIGHT, purpose=Purpose.ENROLL)
    assert outcome.status is VerifyStatus.APPROVED
    assert tally.ways == ["statement", "transaction"]
    assert tally.verbs() == ["UPDATE", "UPDATE", "DELETE", "UPDATE", "INSERT"]
    assert (await tfa.status("admin", "alice")).state == "active"


async def test_a_user_without_a_phone_spends_no_attempt(store: Store, tmp_path: Path, tally: Tally) -> None:
    tfa = service(store, tmp_path, Gateway(tally))
    await tfa.require_enrollment("admin", "carol")  # a user row, no phone
    tally.reset()
    assert (await tfa.verify_code("admin", "carol", RIGHT)).status is VerifyStatus.NEEDS_ENROLLMENT
    assert tally.ways == ["statement", "statement"]  # reserved, then given back
    assert tally.during_provider == []
    for _ in range(10):
        await tfa.verify_code("admin", "carol", RIGHT)
    assert (await tfa.status("admin", "carol")).locked_until == 0


async def test_a_send_is_one_transaction_between_a_read_and_its_event(
    store: Store, tmp_path: Path, tally: Tally
) -> None:
    gateway = Gateway(tally)
    tfa = await alice_with_a_phone(store, tmp_path, gateway)
    tally.reset()
    assert (await tfa.send_code("admin", "alice")).status is SendStatus.SENT
    # The scopes' lock rows, every sliding window in one SELECT, the log; then the budget, alone.
    assert tally.ways == ["reading", "transaction", "statement", "statement"]
    assert tally.verbs() == ["SELECT", "INSERT", "SELECT", "INSERT", "INSERT", "INSERT"]
    assert tally.during_provider == [0]

    tally.reset()
    refused = await tfa.send_code("admin", "alice")  # the cooldown
    assert refused.status is SendStatus.REFUSED
    assert tally.ways == ["reading", "transaction", "statement"]  # the refusal's event alone
    assert tally.verbs() == ["SELECT", "INSERT", "SELECT", "INSERT"]


async def test_with_the_sandbox_its_own_statements_come_on_top(
    store: Store, tmp_path: Path, tally: Tally
) -> None:
    settings = settings_from_mapping(config(tmp_path))
    sandbox = SandboxProvider(store, settings.provider, settings.secret_keys[-1], clock=FakeClock())
    tfa = await alice_with_a_phone(store, tmp_path, sandbox)
    tally.reset()
    await tfa.send_code("admin", "alice")
    # The code stored, the older ones voided with it (one statement on PostgreSQL), then the outbox.
    stored = "statement" if postgresql(store) else "transaction"
    assert tally.ways == ["reading", "transaction", "statement", stored, "statement", "statement"]
    code = await latest_code(store)
    tally.reset()
    assert (await tfa.verify_code("admin", "alice", code)).status is VerifyStatus.APPROVED
    # The code checked in one statement, between the two of the verify.
    assert tally.ways == ["statement", "statement", "statement" if postgresql(store) else "transaction"]
