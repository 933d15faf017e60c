"""Remembered browsers: "remember this browser" after a right code lets that browser skip the
challenge for ``remember_days`` (never a re-check before a change of factors: its proof's method
is ``remembered``, which the pages never take as fresh).

The cookie holds a random token (256 bits); the row holds only its SHA-256, so a copy of the
database opens no browser. A browser is recalled once per proof, when its proof is first issued
(one indexed statement: store/browsers.py), never per request. Every proof a remembered browser
gets carries a digest of its token (``Proof.browser``); forgetting the browser records that
digest as a revoked session, which the middleware's revocation check already reads, so its
proofs die on every worker within ``revocation_check_seconds``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import time
from collections.abc import Callable

from ..audit import AuditTrail, RequestInfo
from ..proof import CLOCK_SKEW_SECONDS
from ..settings import Settings
from ..store import Store
from ..store import browsers as browser_rows
from ..store import revocations as revocation_rows
from ..store.browsers import RememberedBrowser

DAY = 86400.0
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def browser_digest(hashed: str) -> str:
    """What a proof carries of its browser: derived from the stored hash, so that forgetting a
    row (which knows no token) names the proofs it got; never equal to a session digest."""
    return "b" + hashlib.sha256(b"remembered-browser\0" + hashed.encode()).hexdigest()[:31]


def label_of(user_agent: str | None) -> str:
    """ "Firefox on Linux": enough for a person to tell their browsers apart, nothing more."""
    text = user_agent or ""
    browser = next((name for mark, name in _BROWSERS if mark in text), "A browser")
    system = next((name for mark, name in _SYSTEMS if mark in text), "")
    return f"{browser} on {system}" if system else browser


def network_of(ip: str | None) -> str:
    """The address's network (/24 of IPv4, /48 of IPv6): where, roughly, not who."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class Browsers:
    def __init__(
        self, settings: Settings, store: Store, trail: AuditTrail, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.trail = trail
        self.clock = clock

    async def remember(
        self, interface: str, user_id: str, generation: int, request: RequestInfo | None
    ) -> tuple[str, str]:
        """Remember this browser for the interface's ``remember_days``: (its token, for the
        cookie; its digest, for the proof)."""
        days = self.settings.interface(interface).remember_days
        token = secrets.token_urlsafe(32)
        hashed = token_hash(token)
        now = self.clock()
        label = label_of(request.user_agent if request else None)
        network = network_of(request.ip if request else None)
        async with self.trail.recording(
            now, interface, user_id, "browser_remembered", request, browser=label, network=network
        ) as conn:
            await browser_rows.add(
                conn, interface, user_id, hashed, generation, now, now + days * DAY, label, network
            )
        return token, browser_digest(hashed)

    async def recall(self, interface: str, user_id: str, token: str) -> tuple[int, str] | None:
        """(the generation, the browser's digest) when ``token`` is a browser remembered for this
        user and interface and still valid; None otherwise. One statement."""
        if not _TOKEN.fullmatch(token):
            return None
        hashed = token_hash(token)
        generation = await browser_rows.recall(self.store, interface, user_id, hashed, self.clock())
        return None if generation is None else (generation, browser_digest(hashed))

    async def of_user(self, interface: str, user_id: str) -> list[RememberedBrowser]:
        return await browser_rows.of_user(self.store, interface, user_id, self.clock())

    async def forget(
        self, interface: str, user_id: str, browser_id: int | None, request: RequestInfo | None
    ) -> int:
        """Forget one browser (or, with None, every one); the proofs they got die with them on
        every worker within revocation_check_seconds. How many were forgotten."""
        now = self.clock()
        # A proof lives at most the interface's lifetime from its issue (clock skew included).
        until = now + self.settings.interface(interface).proof_max_age_seconds + CLOCK_SKEW_SECONDS
        detail = {"browser_id": str(browser_id)} if browser_id is not None else {"browser_id": "all"}
        async with self.trail.recording(
            now, interface, user_id, "browser_forgotten", request, **detail
        ) as conn:
            hashes = await browser_rows.remove(conn, interface, user_id, browser_id)
            for hashed in hashes:
                digest = browser_digest(hashed)
                await revocation_rows.revoke_session(conn, interface, user_id, digest, now, until)
        return len(hashes)

    def is_this(self, browser: RememberedBrowser, token: str | None) -> bool:
        return bool(token) and secrets.compare_digest(browser.token_hash, token_hash(token or ""))
