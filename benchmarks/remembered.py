"""2b. A remembered browser (issue 15): what its proof costs when it is issued, and after.

The browser passes the challenge once with "remember this browser" ticked; later, without its
proof (a new login), the challenge page recalls it from its cookie and issues the proof at once.
Counted here: the database statements of that one page (the recall on the unique token hash, and
the sign-out read that every proof issued to a login with a session id makes). Its proof then
rides the hot path like any other: the remembered case of table 1 shows it, and table 2 counts
its queries with the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tfa_middleware import TwoFactor
from tfa_middleware.settings import Settings

from .common import Report, Table

REMEMBER_DAYS = 30


def remembering(settings: Settings) -> Settings:
    """``settings`` with remember_days on the admin interface."""
    admin = settings.interfaces["admin"].model_copy(update={"remember_days": REMEMBER_DAYS})
    return settings.model_copy(update={"interfaces": {**settings.interfaces, "admin": admin}})


@contextmanager
def counting(service: TwoFactor) -> Iterator[list[int]]:
    """The statements the service's database runs inside the block: ``[count]``."""
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    engine = service.store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def show(report: Report, at_issue: int, demo_added: float, remembered_added: float) -> None:
    table = Table("2b. A remembered browser", ["what", "figure"])
    table.add("database statements when its proof is issued (the challenge page, no code)", at_issue)
    table.add("of which the recall of the browser (one UPDATE … RETURNING on its unique hash)", 1)
    table.add("added per request with its proof (µs, table 1)", f"{remembered_added:.2f}")
    table.add("added per request with a code's proof (µs, table 1)", f"{demo_added:.2f}")
    table.notes += [
        "the other statement is the sign-out read every proof issued to a login with a session id makes",
        "per request afterwards: no statement while the revocation cache is warm (table 2 counts it)",
    ]
    report.show(table)
    report.target(
        "remembered browser: statements when its proof is issued",
        "≤ 1 beyond any proof's issue",
        f"{at_issue} (1 recall + {at_issue - 1})",
        at_issue <= 2,
    )
    report.target(
        "hot path with a remembered browser's proof",
        "the same as a code's proof (within 1 µs)",
        f"adds {remembered_added:.2f} µs vs {demo_added:.2f} µs",
        remembered_added <= demo_added + 1,
    )
