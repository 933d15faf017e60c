"""Issue 20's metrics: every outcome counted once, the budget read from its row, no personal data
in any label, the metrics and readiness paths readable only from allowed addresses, and the core
without prometheus_client."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine

from tests.codes import other_code
from tests.harness import ADMIN_PHONE, RELAXED_LIMITS, Harness
from tests.scrapes import samples, value
from tests.wsgi_harness import WSGIHarness
from tfa_middleware import schema
from tfa_middleware.errors import ProviderUnavailable
from tfa_middleware.metrics import CHANNELS, ERROR_KINDS, FACTORS, OPERATIONS, OTHER, REASONS
from tfa_middleware.providers.base import CheckResult, Provider, SendResult, Target

ROOT = Path(__file__).resolve().parent.parent
MakeHarness = Callable[..., Awaitable[Harness]]
PHONES = {"alice": ADMIN_PHONE, "bob": ("1", "2015550124")}
OPS = {"metrics": True, "metrics_path": "/_tfa/metrics", "readiness_path": "/_tfa/ready"}


class Failing:
    """The harness's provider, whose sends fail while ``failing`` is set."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.failing = False
        self.name = inner.name
        self.supports_call = inner.supports_call
        self.needs_registration = inner.needs_registration
        self.code_lengths = inner.code_lengths
        self.fingerprint = inner.fingerprint

    async def register(self, target: Target) -> str | None:
        return await self.inner.register(target)

    async def send(self, target: Target, channel: str) -> SendResult:
        if self.failing:
            raise ProviderUnavailable("the provider is down (test)")
        return await self.inner.send(target, channel)

    async def check(self, target: Target, code: str) -> CheckResult:
        return await self.inner.check(target, code)

    async def close(self) -> None:
        await self.inner.close()


async def metered(make_harness: MakeHarness, registry: CollectorRegistry, **overrides: Any) -> Harness:
    limits = RELAXED_LIMITS.model_copy(
        update={"send_cooldown_seconds": 60, "verify_max_failures": 3, "send_max_per_ip_per_hour": 2}
    )
    h = await make_harness(
        limits=limits,
        metrics_registry=registry,
        operations=OPS,
        trusted_proxies=["127.0.0.1"],
        **overrides,
    )
    for user, (country, number) in PHONES.items():
        await h.service.set_phone("admin", user, country, number, confirmed=True)
    return h


async def test_every_outcome_is_counted_once_and_no_label_holds_personal_data(
    make_harness: MakeHarness,
) -> None:
    registry = CollectorRegistry()
    h = await metered(make_harness, registry)
    provider = Failing(h.service.provider)
    h.service.provider = provider
    alice, bob = h.as_user("alice"), h.as_user("bob")
    codes: list[str] = []

    assert (await h.send(alice)).status_code == 303  # sent
    codes.append(await h.latest_code())
    assert (await h.send(alice)).status_code == 429  # cooldown
    provider.failing = True
    assert (await h.send(bob)).status_code == 503  # the provider is down
    provider.failing = False
    assert (await h.verify(alice, codes[0])).status_code == 303  # right: a proof is issued
    assert (await h.send(bob)).status_code == 303
    codes.append(await h.latest_code())
    for _ in range(3):  # wrong, wrong, wrong: locked
        wrong = other_code(codes[-1])
        codes.append(wrong)
        await h.verify(bob, wrong)
    h.clock.advance(61)
    assert (await h.send(bob)).status_code == 429  # the address's 2 sends an hour are used

    found = samples(generate_latest(registry).decode())
    sends = "tfa_sends_total"
    assert value(found, sends, provider="sandbox", channel="sms", outcome="sent") == 2
    assert value(found, sends, outcome="refused") == 2
    assert value(found, sends, outcome="failed") == 1
    assert value(found, "tfa_send_refusals_total", reason="cooldown") == 1
    assert value(found, "tfa_send_refusals_total", reason="ip_limit") == 1
    assert value(found, "tfa_verifies_total", factor="sms", outcome="ok") == 1
    assert value(found, "tfa_verifies_total", factor="sms", outcome="failed") == 3
    assert value(found, "tfa_lockouts_total") == 1
    assert value(found, "tfa_proofs_issued_total", factor="sms") == 1
    assert value(found, "tfa_provider_errors_total", operation="send", kind="ProviderUnavailable") == 1
    # Every call timed: 3 sends (one failed) and 4 checks.
    assert value(found, "tfa_provider_seconds_count", operation="send") == 3
    assert value(found, "tfa_provider_seconds_count", operation="check") == 4

    # The scan: the data this test used appears in no label value, and every label value is one
    # of the closed sets.
    personal = {*PHONES, *codes, "127.0.0.1", "python-httpx"}
    personal |= {country + number for country, number in PHONES.values()}
    personal |= {number for _, number in PHONES.values()} | {number[-4:] for _, number in PHONES.values()}
    allowed = REASONS | CHANNELS | FACTORS | OPERATIONS | ERROR_KINDS | {"sandbox", OTHER}
    allowed |= {"sent", "refused", "failed", "ok", "error"}
    labelled = [s for s in found if s.labels]
    assert labelled
    for sample in labelled:
        for key, label in sample.labels.items():
            if key == "le":  # the histogram's bucket bounds: numbers of ours
                continue
            assert not any(p in label for p in personal), (sample.name, key, label)
            assert label in allowed, (sample.name, key, label)


async def test_the_metrics_path_reads_the_budget_from_its_row(make_harness: MakeHarness) -> None:
    registry = CollectorRegistry()
    h = await metered(make_harness, registry)
    for user in ("alice", "bob"):
        assert (await h.send(h.as_user(user))).status_code == 303
    scrape = await h.client.get("/_tfa/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    found = samples(scrape.text)
    assert value(found, "tfa_sends_total", outcome="sent") == 2
    assert value(found, "tfa_send_budget_used", period="day") == 2
    assert value(found, "tfa_send_budget_used", period="hour") == 2
    assert value(found, "tfa_send_budget_limit", period="day") == RELAXED_LIMITS.send_budget_per_day
    # A new clock hour: the hour's count is 0 at once, with no send to set it.
    h.clock.advance(3600)
    found = samples((await h.client.get("/_tfa/metrics")).text)
    assert value(found, "tfa_send_budget_used", period="hour") == 0


@pytest.mark.parametrize(
    ("trusted", "allow", "forwarded", "readable"),
    [
        ([], ["10.0.0.0/8"], None, False),  # the peer 127.0.0.1 is neither allowed nor a proxy
        ([], ["127.0.0.1"], None, True),
        (["127.0.0.1"], [], None, True),  # a trusted proxy may read them
        (["127.0.0.1"], ["10.1.2.3"], "10.1.2.3", True),  # the client behind the proxy is allowed
        (["127.0.0.1"], ["10.1.2.3"], "8.8.8.8", False),
        ([], ["10.1.2.3"], "10.1.2.3", False),  # a header from an untrusted peer is not read
    ],
)
async def test_only_allowed_addresses_read_the_paths_the_rest_get_404(
    make_harness: MakeHarness, trusted: list[str], allow: list[str], forwarded: str | None, readable: bool
) -> None:
    h = await make_harness(
        metrics_registry=CollectorRegistry(), operations={**OPS, "allow": allow}, trusted_proxies=trusted
    )
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    for path in ("/_tfa/metrics", "/_tfa/ready"):
        answer = await h.client.get(path, headers=headers)
        assert answer.status_code == (200 if readable else 404), (path, answer.text)
        if not readable:  # the same answer as a path that does not exist
            assert answer.text == "Not Found"
            assert "tfa_" not in answer.text


async def test_the_paths_are_never_cached_as_routes(make_harness: MakeHarness) -> None:
    """They are looked for on a route-cache miss only, so the hot path never looks for them: each
    request for them must miss the cache, and still be answered."""
    h = await make_harness(operations={"readiness_path": "/_tfa/ready", "allow": ["127.0.0.1"]})
    for _ in range(3):
        assert (await h.client.get("/_tfa/ready")).status_code == 200
    assert (await h.client.get("/_tfa/other")).status_code == 404  # the shop's: routed and cached
    assert "/_tfa/other" in h.app._router.cached
    assert "/_tfa/ready" not in h.app._router.cached


async def test_readiness_says_not_ready_when_the_schema_or_the_database_is_broken(
    make_harness: MakeHarness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness(operations={"readiness_path": "/_tfa/ready", "allow": ["127.0.0.1"]})
    ready = await h.client.get("/_tfa/ready")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert ready.headers["cache-control"] == "no-store"
    engine = create_engine(f"sqlite:///{tmp_path / 'tfa.sqlite3'}")
    with engine.begin() as conn:
        schema.downgrade(conn, "0007")
    engine.dispose()
    broken = await h.client.get("/_tfa/ready")
    assert broken.status_code == 503
    assert broken.text.startswith("not ready: database schema is at 0007")
    assert any("readiness: not ready" in r.getMessage() for r in caplog.records)

    gone = await make_harness(
        operations={"readiness_path": "/_tfa/ready", "allow": ["127.0.0.1"]},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'tfa.sqlite3'}",
    )
    answer = await gone.client.get("/_tfa/ready")
    assert answer.status_code == 503
    assert "database unreachable" in answer.text


def test_the_wsgi_middleware_answers_the_same_paths(make_wsgi: Callable[..., WSGIHarness]) -> None:
    w = make_wsgi(operations={"readiness_path": "/_tfa/ready", "allow": ["10.0.0.0/8"]})
    assert w.client.get("/_tfa/ready").status_code == 404  # httpx's WSGI peer is 127.0.0.1
    allowed = make_wsgi(operations={"readiness_path": "/_tfa/ready", "allow": ["127.0.0.1"]})
    ready = allowed.client.get("/_tfa/ready")
    assert (ready.status_code, ready.text) == (200, "ready\n")


async def test_paths_inside_an_interface_or_metrics_off_are_refused_at_load(
    make_harness: MakeHarness,
) -> None:
    from tfa_middleware.errors import ConfigError

    with pytest.raises(ConfigError) as inside:
        await make_harness(operations={"readiness_path": "/admin/ready"})
    assert "operations.readiness_path: '/admin/ready' is inside interfaces.admin.path_prefix" in str(
        inside.value
    )
    with pytest.raises(ConfigError) as off:
        await make_harness(operations={"metrics_path": "/_tfa/metrics"})
    assert "operations.metrics_path: needs metrics: true" in str(off.value)


def test_the_core_imports_and_works_without_prometheus_client(tmp_path: Path) -> None:
    """A shop without the metrics extra: the package imports, a code is sent and checked, and
    metrics: true is refused with the extra's name."""
    program = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        from tfa_middleware import TwoFactor, settings_from_mapping
        from tfa_middleware.errors import ConfigError
        from tests.codes import latest_code

        base = {{
            "secret_keys": ["x" * 40],
            "database_url": "sqlite+aiosqlite:///{tmp_path / "core.sqlite3"}",
            "interfaces": {{"admin": {{"path_prefix": "/admin",
                "identity": {{"from": "callable", "path": "tests.harness:header_resolver"}}}}}},
        }}

        async def main():
            async with TwoFactor.from_settings(settings_from_mapping(base)) as tfa:
                await tfa.set_phone("admin", "u", "1", "2015550123", confirmed=True)
                assert (await tfa.send_code("admin", "u")).status.name == "SENT"
                code = await latest_code(tfa.store, "u")
                assert (await tfa.verify_code("admin", "u", code)).status.name == "APPROVED"
            try:
                settings_from_mapping({{**base, "operations": {{"metrics": True}}}})
            except ConfigError as exc:
                assert "pip install 'tfa-middleware[metrics]'" in str(exc), exc
            else:
                raise AssertionError("metrics: true accepted without prometheus_client")
            assert "prometheus_client" not in [m for m in sys.modules if sys.modules[m] is not None]
            print("ok")

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
