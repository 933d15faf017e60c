"""An interface's rollout policy (issue 17): ``step_up`` rules for sensitive paths, ``mode``
(``enforce`` or ``report``) and ``enroll_grace``. The checks that need the interface's prefix and
pages live on :class:`~.interfaces.InterfaceSettings`; these models check their own keys.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, StrictInt, StrictStr, model_validator

from .types import Section, between, invalid

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_STEP_UP_SECONDS = 30 * 24 * 3600


def _methods(names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise invalid("must name at least one method, or be left out (every method)")
    upper = tuple(dict.fromkeys(name.upper() for name in names))
    unknown = [name for name in upper if name not in HTTP_METHODS]
    if unknown:
        raise invalid(f"unknown method {unknown[0]!r} (one of {', '.join(HTTP_METHODS)})")
    return upper


class StepUpRule(Section):
    """``{path, methods?, max_age_seconds}``: a request to ``path`` or below it (the way
    ``path_prefix`` matches), with one of ``methods`` (default: every method), needs a code typed
    at most ``max_age_seconds`` ago; 0: a code typed for this one request."""

    path: StrictStr  # checked against the interface's prefix and pages by InterfaceSettings
    methods: Annotated[tuple[StrictStr, ...], AfterValidator(_methods)] | None = None
    max_age_seconds: Annotated[StrictInt, between(0, MAX_STEP_UP_SECONDS)]


class EnrollGrace(Section):
    """``{until: DATE}`` (through the end of that day, UTC) or ``{logins: N}``: how long a user
    without a second factor may skip setting one up."""

    until: dt.date | None = None
    logins: Annotated[StrictInt, between(1, 1000)] | None = None

    @model_validator(mode="after")
    def _one(self) -> EnrollGrace:
        if (self.until is None) == (self.logins is None):
            raise invalid("give exactly one of until (a date, e.g. 2027-01-31) or logins (a number)")
        return self

    @property
    def ends_at(self) -> float | None:
        """The Unix time the date grace ends (the midnight after ``until``, UTC), or None."""
        if self.until is None:
            return None
        end = dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), dt.UTC)
        return end.timestamp()
