"""Prometheus metrics (the ``metrics`` extra: prometheus_client), counted where the outcome is
known for good, so every worker counts each thing once:

================================  ==============================  =================================
metric                            labels                          counted
================================  ==============================  =================================
``tfa_sends_total``               provider, channel, outcome      an audit event: ``code_sent``
                                                                  (sent), ``send_refused``,
                                                                  ``send_failed``
``tfa_send_refusals_total``       reason (cooldown,               ``send_refused``
                                  account_limit, phone_limit,
                                  ip_limit, country, budget)
``tfa_verifies_total``            factor, outcome (ok, failed,    ``verify_ok``, ``verify_failed``,
                                  error)                          ``verify_error``
``tfa_lockouts_total``            (none)                          ``locked``
``tfa_provider_seconds``          provider, operation (send,      each provider call, timed
                                  check)                          (histogram)
``tfa_provider_errors_total``     provider, operation, kind       a provider call that raised
``tfa_proofs_issued_total``       factor                          a proof cookie issued (the
                                                                  challenge path, not the hot path)
``tfa_send_budget_used``          period (hour, day)              read from the budget row at each
``tfa_send_budget_limit``         period                          scrape (``budget_families``)
================================  ==============================  =================================

The counters come from the audit trail (``AuditTrail.announce``): an event is announced once,
after its transaction committed, in the process that made it. Label values are the closed sets
above, every value passed through ``_one_of``: never a user id, a phone, an address or a code.

They join the registry the shop passes (``TwoFactor(metrics_registry=...)``), else
prometheus_client's default ``REGISTRY``, so a shop that serves ``/metrics`` already serves ours.
Under several workers, prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set
before the workers start) keeps each process's values in files that a scrape merges
(``render``); the counters and the histogram need nothing more.

The budget is not a gauge that workers set: the one row ``tfa_send_budget`` that grants every
send is the truth for all workers and hosts, so a scrape reads it (one primary-key read) and says
what a send would see now, with a past hour or day counting 0. A gauge set by each worker after
its own sends would be as old as that worker's last send (it would not fall to 0 at the new hour,
nor see the units given back after a provider failure), and in multiprocess mode would need a
"most recent" merge across files. Counting the audit events instead would miss the sends waiting
on the provider that the budget already holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .store import AuditEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

OUTCOME_OF_SEND = {"code_sent": "sent", "send_refused": "refused", "send_failed": "failed"}
OUTCOME_OF_VERIFY = {"verify_ok": "ok", "verify_failed": "failed", "verify_error": "error"}
REASONS = frozenset({"cooldown", "account_limit", "phone_limit", "ip_limit", "country", "budget"})
CHANNELS = frozenset({"sms", "call"})
FACTORS = frozenset({"sms", "totp", "recovery", "webauthn", "remembered"})
OPERATIONS = frozenset({"send", "check"})
ERROR_KINDS = frozenset(
    {
        "ProviderError",
        "ProviderUnavailable",
        "ProviderMisconfigured",
        "ProviderRateLimited",
        "ProviderBlocked",
        "ProviderUserNotFound",
    }
)
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Provider calls take from tens of milliseconds to the client's deadline (10 s by default).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
OTHER = "other"


def _one_of(value: object, allowed: frozenset[str]) -> str:
    """The value if it is one of the closed set, else "other": no label holds what a user typed."""
    return value if isinstance(value, str) and value in allowed else OTHER


def provider_label(name: str) -> str:
    """A provider's name as configured (sandbox, authy, twilio_verify, a shop's own): a name of
    code, not of a person; anything else is "other"."""
    return name if _PROVIDER_NAME.fullmatch(name) else OTHER


class Metrics(Protocol):
    """What the service tells the metrics. ``NO_METRICS`` when metrics are off."""

    def event(self, item: AuditEvent, provider: str) -> None: ...

    def provider_call(self, provider: str, operation: str, seconds: float, error: str | None) -> None: ...

    def proof_issued(self, factor: str) -> None: ...


class NoMetrics:
    """Metrics off (or prometheus_client not installed): nothing is counted."""

    def event(self, item: AuditEvent, provider: str) -> None:
        pass

    def provider_call(self, provider: str, operation: str, seconds: float, error: str | None) -> None:
        pass

    def proof_issued(self, factor: str) -> None:
        pass


NO_METRICS = NoMetrics()


class PrometheusMetrics:
    """The counters and the histogram, in ``registry`` (prometheus_client's default when None).

    Made once per registry: a second service in the same process (tests, a shop with two
    middlewares) counts into the same metrics rather than failing on a duplicate name."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = REGISTRY if registry is None else registry
        found = _made.get(id(self.registry))
        if found is None or found[0] is not self.registry:
            found = _made[id(self.registry)] = (self.registry, _instruments(self.registry))
        self._i = found[1]

    def event(self, item: AuditEvent, provider: str) -> None:
        detail: Mapping[str, Any] = item.detail or {}
        if (outcome := OUTCOME_OF_SEND.get(item.kind)) is not None:
            channel = _one_of(detail.get("channel", "sms"), CHANNELS)
            self._i.sends.labels(provider_label(provider), channel, outcome).inc()
            if outcome == "refused":
                self._i.refusals.labels(_one_of(detail.get("reason"), REASONS)).inc()
        elif (outcome := OUTCOME_OF_VERIFY.get(item.kind)) is not None:
            self._i.verifies.labels(_one_of(detail.get("factor", "sms"), FACTORS), outcome).inc()
        elif item.kind == "locked":
            self._i.lockouts.inc()

    def provider_call(self, provider: str, operation: str, seconds: float, error: str | None) -> None:
        name, operation = provider_label(provider), _one_of(operation, OPERATIONS)
        self._i.latency.labels(name, operation).observe(seconds)
        if error is not None:
            self._i.errors.labels(name, operation, _one_of(error, ERROR_KINDS)).inc()

    def proof_issued(self, factor: str) -> None:
        self._i.proofs.labels(_one_of(factor, FACTORS)).inc()


class _Instruments:
    def __init__(self, **made: Any) -> None:
        self.__dict__.update(made)

    sends: Any
    refusals: Any
    verifies: Any
    lockouts: Any
    latency: Any
    errors: Any
    proofs: Any


_made: dict[int, tuple[CollectorRegistry, _Instruments]] = {}


def _instruments(registry: CollectorRegistry) -> _Instruments:
    from prometheus_client import Counter, Histogram

    def counter(name: str, text: str, labels: Iterable[str] = ()) -> Any:
        return Counter(name, text, tuple(labels), registry=registry)

    return _Instruments(
        sends=counter("tfa_sends", "Codes asked for, by outcome", ("provider", "channel", "outcome")),
        refusals=counter("tfa_send_refusals", "Sends refused by a limit", ("reason",)),
        verifies=counter("tfa_verifies", "Second factors checked at sign-in", ("factor", "outcome")),
        lockouts=counter("tfa_lockouts", "Users locked out after failed codes"),
        latency=Histogram(
            "tfa_provider_seconds",
            "Provider call time",
            ("provider", "operation"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        errors=counter(
            "tfa_provider_errors", "Provider calls that failed", ("provider", "operation", "kind")
        ),
        proofs=counter("tfa_proofs_issued", "Proof cookies issued", ("factor",)),
    )


def budget_families(used_hour: int, used_day: int, per_hour: int, per_day: int) -> list[Metric]:
    """The send budget as a scrape reads it: used now and the limit, per hour and per UTC day."""
    from prometheus_client.core import GaugeMetricFamily

    used = GaugeMetricFamily(
        "tfa_send_budget_used", "Codes sent this clock hour / UTC day (the budget row)", labels=["period"]
    )
    limit = GaugeMetricFamily("tfa_send_budget_limit", "The shop's send budget", labels=["period"])
    for period, count, most in (("hour", used_hour, per_hour), ("day", used_day, per_day)):
        used.add_metric([period], count)
        limit.add_metric([period], most)
    return [used, limit]


class _Fixed:
    """A collector of families read before the scrape (the budget: an awaited database read)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(registry: CollectorRegistry | None, extra: list[Metric]) -> tuple[bytes, str]:
    """The text a scrape of our metrics path reads: every worker's values merged in multiprocess
    mode (else the registry's own), and ``extra`` (the budget)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    scraped = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
    else:
        scraped.register(_Registry(REGISTRY if registry is None else registry))
    scraped.register(_Fixed(extra))
    return generate_latest(scraped), CONTENT_TYPE_LATEST


class _Registry:
    """A registry seen as one collector (a registry cannot be registered in another as it is)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def build_metrics(enabled: bool, registry: CollectorRegistry | None) -> Metrics:
    """Prometheus metrics when the settings ask for them (or a registry is given)."""
    return PrometheusMetrics(registry) if enabled or registry is not None else NO_METRICS
