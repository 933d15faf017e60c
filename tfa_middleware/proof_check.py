"""Step 5 of the journey, shared by the ASGI and the WSGI middleware: is this request's proof valid?

The check is synchronous while the user's revocations are cached (the hot path: one cookie read,
one cached HMAC check, dictionary look-ups); only when the database must be asked does it hand back
a coroutine, which the ASGI middleware awaits on its loop and the WSGI middleware runs on its
process's loop thread. The caches (the users' revocations, the shop sessions' digests) belong to
the :class:`ProofCheck`, so to the one middleware that made it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.types import Scope

from .asgi import CookieParser, is_https
from .cache import BoundedCache
from .errors import StoreUnavailable
from .identity import Identity
from .proof import Proof, session_digest
from .routes import Interface
from .service import Revocations, TwoFactor

log = logging.getLogger("tfa_middleware")
GENERATION_CACHE_SIZE = 100_000
DIGEST_CACHE_SIZE = 10_000

Checked = Proof | Coroutine[Any, Any, Proof | None] | None
"""A valid proof, None, or (the database must be asked) a coroutine that answers one of those."""


class ProofCheck:
    """The proof check of one middleware: ``check(iface, scope, identity, now)``."""

    def __init__(self, service: TwoFactor, cookies: CookieParser, revocation_seconds: float) -> None:
        self.service = service
        self.cookies = cookies
        self.revocation_seconds = revocation_seconds
        self.generations: BoundedCache[tuple[str, str], tuple[Revocations, float]] = BoundedCache(
            GENERATION_CACHE_SIZE
        )
        self.digests: BoundedCache[str | None, str] = BoundedCache(DIGEST_CACHE_SIZE)  # shop session ids
        self.forget: Callable[[tuple[str, str]], object] = self.generations.pop

    def check(self, iface: Interface, scope: Scope, identity: Identity | None, now: float) -> Checked:
        """The request's valid proof, or None. Answered at once while the user's revocations are
        cached (the usual case: not even a coroutine to create); a coroutine when the database
        must be asked."""
        if identity is None:
            return None  # on our pages: nobody logged in has no proof
        value = self.cookies.read(scope, iface.cookie_https if is_https(scope) else iface.cookie_http)
        if not value:
            return None
        proof = iface.codec.read(value, now)
        if proof is None or proof.user_id != identity.user_id:
            return None
        digest = self.digests.get(identity.session_id)
        if digest is None:
            digest = session_digest(identity.session_id)
            self.digests.put(identity.session_id, digest)
        if proof.session_digest != digest:
            return None
        key = (iface.settings.name, identity.user_id)
        # The user's revocations (generation, signed-out logins) come from the cache while younger
        # than revocation_check_seconds. A cookie claiming a newer generation than the cache knows
        # (just verified, perhaps on another worker) asks the database at once, not to be refused.
        cached = self.generations.get(key)
        if (
            cached is None
            or proof.generation > cached[0].generation
            or now - cached[1] >= self.revocation_seconds
        ):
            return self.in_database(proof, key, now)
        return unrevoked(proof, cached[0])

    async def in_database(self, proof: Proof, key: tuple[str, str], now: float) -> Proof | None:
        return unrevoked(proof, await self.generation(key, now))

    async def generation(self, key: tuple[str, str], now: float) -> Revocations:
        """The user's current revocations from the database (one query), remembered for the cache."""
        interface, user_id = key
        cached = self.generations.get(key)
        try:
            current = await self.service.revocations(interface, user_id)
        except StoreUnavailable:
            if cached is None:
                raise
            # Proofs stay stateless while the database is away: the last revocations we saw hold.
            log.warning("database unavailable; using the cached generation for %s/%s", interface, user_id)
            return cached[0]
        self.generations.put(key, (current, now))
        return current


def unrevoked(proof: Proof, current: Revocations) -> Proof | None:
    """``proof`` unless the user's generation moved on or the shop signed its login out."""
    if proof.generation != current.generation:
        return None
    if current.sessions:  # most users have no revocation: one test, and the proof goes on
        # That login was signed out by the shop after the proof was issued (the proof carries the
        # sign-out it saw): void. No clock is compared, so no host's clock can save a proof, and a
        # browser whose session id outlives the logout is not refused after passing again.
        revoked_at = current.sessions.get(proof.session_digest) if proof.session_digest else None
        if revoked_at is not None and revoked_at > proof.seen:
            return None
        # A remembered browser that was forgotten: every proof it got is void, whenever issued
        # (a forgotten browser's token never works again, so no later proof can carry it).
        if proof.browser and proof.browser in current.sessions:
            return None
    return proof
