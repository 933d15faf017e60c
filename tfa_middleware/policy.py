"""Issue 17's policy as the middleware applies it per request: step-up rules precompiled per
path, and the methods of proofs that prove no code typed by the person.

A route (``routes.py``) carries the :class:`StepUp` of its path, worked out once when the path is
first routed (the rules of its interface whose path holds it, in the canonical or the literal
reading, as ``path_prefix`` matches) and remembered with the route. A path no rule covers carries
None: the hot path pays one ``is not None`` test for step-up, whatever the number of rules.

Freshness is judged by the proof's own issue time on the checking worker's clock, as the proof's
lifetime is (``proof.py``): a proof a little ahead of this clock (another worker's, up to
``CLOCK_SKEW_SECONDS``) counts as just issued. ``max_age_seconds: 0`` asks for a code typed for
this one request: the proof must be at most :data:`ONCE_SECONDS` old and is spent by the request
it lets through (one ``INSERT … ON CONFLICT DO NOTHING`` of its digest: ``store/policy.py``), so
the next such request, on any worker, asks for a code again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from starlette.types import Scope

from .asgi import header, inside
from .proof import Proof
from .settings import StepUpRule
from .settings.interfaces import as_prefix

REMEMBERED = "remembered"  # the proof's method when a remembered browser skipped the challenge
EXEMPT = "exempt"  # a user exempted by a manager for a while (no code at all)
GRACE = "grace"  # a user without a factor who skipped enrollment during enroll_grace
NOT_TYPED = frozenset({REMEMBERED, EXEMPT, GRACE})  # never satisfies a step-up rule
ONCE_SECONDS = 300  # max_age_seconds: 0: a code typed at most this long ago, for one request


@dataclass(frozen=True, slots=True)
class StepUp:
    """The step-up demands on one path: the max age per method named by a rule, and for any
    other method (``other``; None: no rule for it). Where rules overlap the strictest holds."""

    ages: Mapping[str, int]
    other: int | None

    def limit(self, method: str) -> int | None:
        return self.ages.get(method, self.other)


@dataclass(frozen=True, slots=True)
class StepUpRules:
    """An interface's rules, precompiled: (prefix, methods or None, max age)."""

    rules: tuple[tuple[str, frozenset[str] | None, int], ...]

    @classmethod
    def of(cls, rules: Iterable[StepUpRule]) -> StepUpRules:
        compiled = []
        for rule in rules:
            methods = frozenset(rule.methods) if rule.methods is not None else None
            if methods is not None and "GET" in methods:
                methods |= {"HEAD"}  # HEAD reads what GET reads
            compiled.append((as_prefix(rule.path), methods, rule.max_age_seconds))
        return cls(tuple(compiled))

    def on(self, *readings: str) -> StepUp | None:
        """The demands on a path (its readings: canonical, literal), or None when no rule holds it."""
        matching = [r for r in self.rules if any(inside(path, r[0]) for path in readings)]
        if not matching:
            return None
        other = min((age for _, methods, age in matching if methods is None), default=None)
        ages: dict[str, int] = {}
        for _, methods, age in matching:
            for method in methods or ():
                ages[method] = min(age, ages.get(method, age), *(() if other is None else (other,)))
        return StepUp(ages, other)


NO_RULES = StepUpRules(())


def fresh_enough(proof: Proof, limit: int, now: float) -> bool:
    """Whether ``proof`` meets a step-up rule of ``limit`` seconds by its age alone (for 0, it must
    also be spent: :func:`spent_key`). A remembered browser, an exemption or a grace never does."""
    if proof.method in NOT_TYPED:
        return False
    return now - proof.issued_at <= (limit or ONCE_SECONDS)


def spent_key(proof: Proof) -> str:
    """What a max-age-0 request spends: the digest of the proof's signed content (two proofs with
    the same content are one proof)."""
    fields = (proof.interface, proof.user_id, proof.generation, proof.issued_at, proof.method)
    text = repr((*fields, proof.session_digest, proof.seen, proof.browser))
    return hashlib.sha256(text.encode()).hexdigest()


def step_up_url(scope: Scope, raw: str, root: str, prefix: str, pages_path: str) -> str:
    """The challenge for a step-up, as a re-check (``reauth``: no proof or remembered browser
    passes it), returning to the page asked for (GET, HEAD) or, for any other method (never
    replayed), to the page the form was on (the Referer, when it is this site's and inside the
    interface; else the interface's front)."""
    if scope.get("method", "GET") in ("GET", "HEAD"):
        query = scope.get("query_string", b"").decode("latin-1")
        target = raw + (f"?{query}" if query else "")
    else:
        target = came_from(scope, root, prefix)
    return f"{root}{pages_path}/challenge?reauth=1&next={quote(target, safe='')}"


def came_from(scope: Scope, root: str, prefix: str) -> str:
    """The Referer as a path relative to the root, when it names this host and the interface."""
    referer, host = header(scope, b"referer"), header(scope, b"host")
    if not referer or not host:
        return prefix
    parts = urlsplit(referer)
    if parts.netloc.lower() != host.lower() or not parts.path.startswith(root + "/"):
        return prefix
    path = parts.path[len(root) :] if root else parts.path
    if not inside(as_prefix(path), prefix):
        return prefix  # the pages check ``next`` again (kit.safe_next): this only picks a nicer one
    return path + (f"?{parts.query}" if parts.query else "")
