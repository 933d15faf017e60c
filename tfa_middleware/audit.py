"""The audit trail: the one way the service records an event.

An event is stored in the transaction of the change it describes (or alone), and only once that
transaction has committed does it go to the audit log and the shop's ``on_event`` hook: nobody
hears of a change that did not happen.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .logging import EVENT_FIELD
from .metrics import NO_METRICS, Metrics
from .store import AuditEvent, Store
from .store import events as event_rows
from .store.driver import Connection

log = logging.getLogger("tfa_middleware")
# One line per audit event, at INFO, its fields in record.tfa_event (tfa_middleware.logging): route
# this logger to a file or a collector to keep them.
audit_log = logging.getLogger("tfa_middleware.audit")

EventHook = Callable[[AuditEvent], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who asked, for the audit log."""

    ip: str | None = None
    user_agent: str | None = None
    actor: str | None = None  # an administrator acting on another user's account


class AuditTrail:
    def __init__(self, store: Store, on_event: EventHook | None, metrics: Metrics = NO_METRICS) -> None:
        self.store = store
        self.on_event = on_event
        # Each event is counted once, here, after its transaction committed (metrics.py).
        self.metrics = metrics
        self.provider_name = ""  # the service's provider, for the sends' label

    async def record(
        self, now: float, interface: str, user_id: str, kind: str, request: RequestInfo | None, **detail: str
    ) -> None:
        """An event on its own: nothing else changes with it (one statement)."""
        await self.record_events(now, interface, user_id, request, (kind, detail))

    async def record_events(
        self,
        now: float,
        interface: str,
        user_id: str,
        request: RequestInfo | None,
        *kinds: tuple[str, Mapping[str, str]],
    ) -> None:
        """Events on their own, each ``(kind, detail)``, stored together (a failed code and the
        lock it set)."""
        items = [self.event(now, interface, user_id, kind, request, **detail) for kind, detail in kinds]
        async with self.store.statement() if len(items) == 1 else self.store.transaction() as conn:
            await event_rows.add(conn, *items)
        await self.announce(*items)

    @asynccontextmanager
    async def recording(
        self, now: float, interface: str, user_id: str, kind: str, request: RequestInfo | None, **detail: str
    ) -> AsyncIterator[Connection]:
        """A transaction for the change the event describes, which stores the event with it::

        async with trail.recording(now, "admin", "42", "reset", request) as conn:
            await enrollments.change(conn, "admin", "42", now, bump_generation=True)
        """
        item = self.event(now, interface, user_id, kind, request, **detail)
        async with self.store.transaction() as conn:
            yield conn
            await event_rows.add(conn, item)
        await self.announce(item)

    @staticmethod
    def event(
        now: float, interface: str, user_id: str, kind: str, request: RequestInfo | None, **detail: str
    ) -> AuditEvent:
        """An event to store in a transaction of the caller's (``store.events.add``), then
        ``announce``; ``record`` and ``recording`` do both."""
        if request is not None and request.actor is not None:
            detail = {**detail, "by": request.actor}
        return AuditEvent(
            at=now,
            interface=interface,
            user_id=user_id,
            kind=kind,
            ip=request.ip if request else None,
            user_agent=request.user_agent if request else None,
            detail=detail,
        )

    async def announce(self, *items: AuditEvent) -> None:
        """Events already stored go to the audit log and the shop's hook."""
        for item in items:
            await self._announce(item)

    async def _announce(self, item: AuditEvent) -> None:
        self.metrics.event(item, self.provider_name)
        if audit_log.isEnabledFor(logging.INFO):
            # The fields travel as data, not as a JSON message, so a JSON formatter (ours in
            # tfa_middleware.logging, or the collector's) encodes them once.
            fields = {
                "at": item.at,
                "interface": item.interface,
                "user_id": item.user_id,
                "event": item.kind,
                "ip": item.ip,
                "user_agent": item.user_agent,
                **dict(item.detail or {}),
            }
            audit_log.info("%s %s/%s", item.kind, item.interface, item.user_id, extra={EVENT_FIELD: fields})
        if self.on_event is not None:
            try:
                result = self.on_event(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The shop's hook must not decide whether a user gets in; its failure is logged.
                log.exception("on_event hook failed for %s event", item.kind)
