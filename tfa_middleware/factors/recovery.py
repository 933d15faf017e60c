"""Recovery codes: ten single-use codes for when the phone or the app is not at hand.

Each code is 16 characters of RFC 4648 base32 (80 bits, from ``secrets``), shown once as four
groups (``ABCD-EFGH-IJKL-MNOP``) and stored only as a keyed hash (HMAC-SHA256 under a key derived
from ``secret_keys``: a copy of the database yields no code, and a rotation keeps the older hashes
working, each looked up under every key). A new set replaces the old one. Using a code is one
conditional UPDATE (store/factors.py), so two parallel uses of one code admit one; every check
goes through the account's verify lockout, shared with the other factors.
"""

from __future__ import annotations

import secrets

from ..audit import RequestInfo
from ..outcomes import VerifyOutcome, VerifyStatus
from ..store import factors as factor_rows
from ..store.factors import RECOVERY
from .attempts import Parts
from .keys import KeyedHash

COUNT = 10
LENGTH = 16  # base32 characters: 5 bits each, 80 bits a code
FEW_LEFT = 2  # at this many unused codes or fewer, the pages suggest a new set
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# What people mistype when copying from paper: base32 has neither 0, 1 nor 8.
_READ_AS = str.maketrans({"0": "O", "1": "I", "8": "B"})


def new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, LENGTH, 4))


def normalise(code: str) -> str | None:
    """The code as stored (upper case, no separators), or None if it cannot be one."""
    text = "".join(c for c in code.upper() if c not in " -\t").translate(_READ_AS)
    if len(text) != LENGTH or not all(c in _ALPHABET for c in text):
        return None
    return text


class RecoveryCodes:
    def __init__(self, parts: Parts) -> None:
        self.settings, self.store, self.attempts, self.trail, self.clock = parts
        self._hash = KeyedHash(self.settings.secret_keys, "recovery-code")

    def _message(self, interface: str, user_id: str, normalised: str) -> str:
        return f"{interface}\0{user_id}\0{normalised}"

    async def issue(self, interface: str, user_id: str, request: RequestInfo | None) -> list[str]:
        """A new set (the old one is void); the codes, to be shown once and never again."""
        codes = [new_code() for _ in range(COUNT)]
        hashes = [self._hash(self._message(interface, user_id, c.replace("-", ""))) for c in codes]
        now = self.clock()
        async with self.trail.recording(
            now, interface, user_id, "recovery_codes_issued", request, count=str(COUNT)
        ) as conn:
            await factor_rows.replace_recovery(conn, interface, user_id, hashes, now)
        return codes

    async def left(self, interface: str, user_id: str) -> int:
        return await factor_rows.recovery_left(self.store, interface, user_id)

    async def verify(
        self, interface: str, user_id: str, code: str, request: RequestInfo | None
    ) -> VerifyOutcome:
        normalised = normalise(code)
        if normalised is None:
            return VerifyOutcome(VerifyStatus.MALFORMED, method=RECOVERY)
        left = await self.left(interface, user_id)
        if not left:
            return VerifyOutcome(VerifyStatus.NEEDS_ENROLLMENT, method=RECOVERY)
        now = self.clock()
        permit = await self.attempts.reserve(interface, user_id, now)
        if not permit.allowed:
            return self.attempts.refused(permit)
        candidates = self._hash.all(self._message(interface, user_id, normalised))
        # The use, the success and its event in one transaction: a code is never spent unheard.
        # (The count in the event is read before: two codes used at the same moment both say it.)
        try:
            async with self.trail.recording(
                now, interface, user_id, "verify_ok", request, factor=RECOVERY, codes_left=str(left - 1)
            ) as conn:
                if not await factor_rows.use_recovery(conn, interface, user_id, candidates, now):
                    raise _Unused
                generation = await self.attempts.succeeded(conn, interface, user_id, now)
        except _Unused:
            return await self.attempts.rejected(interface, user_id, now, permit, request, RECOVERY)
        return VerifyOutcome(VerifyStatus.APPROVED, generation=generation, method=RECOVERY)


class _Unused(Exception):
    """No unused code matched: the transaction rolls back, and no success is recorded."""
