"""CSRF protection for the challenge pages' forms.

The token is a timestamped HMAC over a digest of (interface, user id, shop session), so it needs no
server-side state and is useless to any other user, interface or login. A POST is also refused when
the browser says it came from another site (``Sec-Fetch-Site: cross-site``) or names a foreign
``Origin``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence

from itsdangerous import BadSignature
from starlette.types import Scope

from .asgi import header
from .settings import Secret
from .signing import ClockedTimestampSigner

TOKEN_MAX_AGE_SECONDS = 2 * 3600


class CsrfTokens:
    def __init__(self, interface: str, secret_keys: Sequence[Secret], clock: Callable[[], float]) -> None:
        self._signer = ClockedTimestampSigner(
            [key.reveal() for key in secret_keys],
            salt=f"tfa-middleware.csrf.{interface}",
            digest_method=hashlib.sha256,
            clock=clock,
        )
        self.interface = interface

    def _subject(self, user_id: str, session_id: str | None) -> str:
        text = f"{self.interface}\0{user_id}\0{session_id or ''}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def issue(self, user_id: str, session_id: str | None) -> str:
        return self._signer.sign(self._subject(user_id, session_id)).decode()

    def valid(self, token: str | None, user_id: str, session_id: str | None) -> bool:
        if not token or len(token) > 256:
            return False
        try:
            subject = self._signer.unsign(token.encode("ascii"), max_age=TOKEN_MAX_AGE_SECONDS)
        except (BadSignature, UnicodeError):
            return False
        expected = self._subject(user_id, session_id).encode()
        return secrets.compare_digest(subject, expected)


def cross_site(scope: Scope) -> bool:
    """True when the browser tells us the request did not come from one of our own pages.

    ``Sec-Fetch-Site`` is set by the browser and cannot be forged by a page, so when present it
    decides alone: our forms are always same-origin (``none`` is a user's own navigation).
    Older browsers without it are judged by ``Origin``; ``Origin: null`` is what Chromium sends
    for same-origin posts under ``Referrer-Policy: no-referrer``, so it is not taken as foreign,
    and the CSRF token still has to match.
    """
    fetch_site = header(scope, b"sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = header(scope, b"origin")
    if origin is None or origin == "null":
        return False
    host = header(scope, b"host")
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return origin != f"{scheme}://{host}"
