"""The signed "second factor done" cookie.

The value is ``base64url(json payload) . base64url(HMAC-SHA256)`` made with itsdangerous's
:class:`~itsdangerous.Signer` (a salt per interface, so an admin cookie never verifies on the
customer interface). ``secret_keys`` is a list: the newest (last) signs, all of them verify.

The payload holds the interface, user id, generation, issue time, method, a digest of the shop's
session id, and the time the shop last signed that login out as the database knew it when the proof
was issued (``seen``): no phone number, no code, no other personal data. A sign-out recorded later
than ``seen`` voids the proof, so a browser whose session id outlives a logout (Flask-Login's
``_id``) passes the second factor again at once after logging back in, and no clock of one host is
compared with another's. The lifetime is absolute, counted
from the payload's own issue time; a time in the future is refused.

Verifying is the hot path. A bounded map from cookie values already verified to their payload
means a returning browser costs one dictionary look-up; only values that passed the HMAC check
ever enter it, so a forged value always pays for (and fails) the check. The map belongs to the
codec (one per interface of one middleware); :func:`session_digest` remembers nothing, so no
module holds a shop's session id (the middleware keeps its own map of the digests it compares).

The cookie's name and its ``Set-Cookie`` headers (set, and clear) are written here once, for the
pages and for the middleware's shop-logout hook alike: over https the name takes the ``__Host-``
prefix (``Secure``, ``Path=/``, no ``Domain``), so no sibling subdomain can plant or shadow it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer

from .cache import BoundedCache
from .settings import Secret

MAX_COOKIE_BYTES = 4096  # security requirement 11
CLOCK_SKEW_SECONDS = 5  # several hosts' clocks disagree a little; a cookie from further ahead is refused
# 3 adds ``browser``; 2 (without it) and 1 (without ``seen`` too) are still read, as a browser of
# none and a sign-out seen never, so that an upgrade signs nobody out.
_FORMAT = 3
_SHAPES = (([_FORMAT], 9), ([2], 8), ([1], 7))


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified second factor, as the app reads it with :func:`~tfa_middleware.second_factor`:
    the interface and shop user id it was done for, the user's generation then, when it was done
    (``issued_at``, Unix seconds), how (``method``: ``"sms"``), a digest of the shop's session
    id ("" when the resolver gives none), and when that login was last signed out as far as the
    database knew at issue (``seen``, 0 for never): a later sign-out voids the proof. ``browser``
    is a digest of the remembered browser's token when there is one ("" otherwise): forgetting
    that browser voids the proofs it got."""

    interface: str
    user_id: str
    generation: int
    issued_at: int
    method: str
    session_digest: str
    seen: float = 0.0
    browser: str = ""


# Starlette's delete_cookie writes an empty value as "" too; a fixed date keeps the header a constant.
_EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "


def proof_cookie_name(cookie: str, https: bool) -> str:
    """The browser's name for the interface's ``proof_cookie``: ``__Host-`` prefixed over https."""
    return f"__Host-{cookie}" if https else cookie


def proof_set_cookie(name: str, value: str, max_age_seconds: int, https: bool) -> str:
    """The ``Set-Cookie`` header value that stores a proof: HttpOnly, SameSite=Lax, the whole site.
    ``name`` is :func:`proof_cookie_name`'s; the value is base64url and dots, never quoted."""
    return f"{name}={value}; HttpOnly; Max-Age={max_age_seconds}; Path=/; SameSite=lax{_secure(https)}"


def proof_clear_cookie(name: str, https: bool) -> str:
    """The ``Set-Cookie`` header value that removes the proof cookie ``name`` from the browser."""
    return f'{name}=""; {_EXPIRED}HttpOnly; Max-Age=0; Path=/; SameSite=lax{_secure(https)}'


def _secure(https: bool) -> str:
    # Over plain http a Secure cookie would never come back: the attribute follows the scheme.
    return "; Secure" if https else ""


def session_digest(session_id: str | None) -> str:
    """A short digest of the shop's session id ("" when the shop gives none)."""
    if not session_id:
        return ""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


class ProofCodec:
    """Issues and reads the proof cookie of one interface."""

    def __init__(
        self,
        interface: str,
        secret_keys: Sequence[Secret],
        max_age_seconds: int,
        *,
        cache_size: int = 10_000,
    ) -> None:
        self.interface = interface
        self.max_age_seconds = max_age_seconds
        self._signer = Signer(
            [key.reveal() for key in secret_keys],
            salt=f"tfa-middleware.proof.{interface}",
            digest_method=hashlib.sha256,
        )
        self._verified: BoundedCache[str, Proof] = BoundedCache(cache_size)

    def issue(
        self,
        user_id: str,
        generation: int,
        now: float,
        method: str,
        session_id: str | None,
        seen: float = 0.0,
        browser: str = "",
    ) -> str:
        digest = session_digest(session_id)
        payload = json.dumps(
            [_FORMAT, self.interface, user_id, generation, int(now), method, digest, seen, browser],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        value = self._signer.sign(base64.urlsafe_b64encode(payload).rstrip(b"=")).decode()
        if len(value) > MAX_COOKIE_BYTES - 200:  # leave room for the name and attributes
            raise ValueError("proof cookie would be too large; use shorter user ids")
        return value

    def read(self, value: str, now: float) -> Proof | None:
        """The proof in ``value`` if it is genuine and within its lifetime, else None. Never raises."""
        proof = self._verified.get(value)
        if proof is None:
            proof = self._verify(value)
            if proof is None:
                return None
            self._verified.put(value, proof)
        age = now - proof.issued_at
        if age >= self.max_age_seconds or age < -CLOCK_SKEW_SECONDS:
            return None
        return proof

    def _verify(self, value: str) -> Proof | None:
        if len(value) > MAX_COOKIE_BYTES:
            return None
        try:
            encoded = self._signer.unsign(value.encode("ascii"))
            raw = json.loads(base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)))
        except (BadSignature, UnicodeError, ValueError):
            return None
        # A genuine signature over a payload of another shape is still refused.
        if not isinstance(raw, list) or (raw[:1], len(raw)) not in _SHAPES:
            return None
        _, interface, user_id, generation, issued_at, method, digest, *rest = raw
        seen = rest[0] if rest else 0.0
        browser = rest[1] if len(rest) > 1 else ""
        if not (
            interface == self.interface
            and isinstance(user_id, str)
            and type(generation) is int
            and type(issued_at) is int
            and isinstance(method, str)
            and isinstance(digest, str)
            and type(seen) in (int, float)
            and isinstance(browser, str)
        ):
            return None
        return Proof(interface, user_id, generation, issued_at, method, digest, float(seen), browser)
