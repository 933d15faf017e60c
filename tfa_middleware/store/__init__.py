"""The database (:class:`Store`: the engine, transactions, the schema's readiness) and its
queries, one module per table: ``enrollments`` (the user row and its factors), ``codes``,
``outbox``, ``events``, ``revocations``, ``meta``, and ``maintenance`` (purge).

Every query function takes the :class:`Store` (a transaction of its own) or the connection of a
transaction already open (its statements commit with the others). Everything that must be exact
under concurrency is one statement (an ``UPDATE … WHERE`` whose row count says who won), never a
read-modify-write in Python.
"""

from __future__ import annotations

from .database import Store as Store
from .enrollments import Enrollment as Enrollment
from .events import AuditEvent as AuditEvent
from .outbox import OutboxMessage as OutboxMessage
