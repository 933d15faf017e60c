"""Passkeys and security keys (WebAuthn) as a second factor, through py_webauthn (the ``passkeys``
extra: imported only when an interface lists ``webauthn``).

- **Options made here.** The server makes every ceremony's options: the relying party is the
  interface's ``rp_id``, the accepted origins its ``origins`` (settings/origins.py), user
  verification is preferred (a security key without a PIN still counts: this is the second
  factor, the shop's password is the first), resident keys discouraged (the user is known before
  the ceremony, so the credentials are listed: a security key's few slots are not spent), no
  attestation asked for (any authenticator the user trusts will do; a fabricated one proves no
  more than a real one, since its key is checked at every sign-in).
- **Challenges.** 32 random bytes, stored as their SHA-256 in ``tfa_code`` (the table of
  single-use, short-lived secrets bound to an interface, a user and a purpose), one live per user
  and purpose (a new one voids the last), for ``CHALLENGE_SECONDS``. The challenge the browser
  signed is read from its client data and spent by one conditional UPDATE before anything else is
  checked: a replayed, expired, voided or other user's challenge finds no row.
- **Credentials.** A passkey is a ``webauthn`` factor row (store/passkeys.py): the SHA-256 of its
  credential id as ``value`` (unique among passkeys: a credential id registered already, to anyone,
  is refused, as WebAuthn asks), the id, public key and transports as JSON in ``credential``.
  A sign-in finds the row by the id the browser returns and refuses it unless it is this user's on
  this interface.
- **Sign counters.** py_webauthn is given a current count of 0, so its own counter check passes;
  ours is in the UPDATE that records the use (store/passkeys.py: the counter must go up, or stay 0
  for an authenticator that keeps none). A counter that goes back (a cloned authenticator, or a
  replayed assertion) is refused and audited as ``passkey_counter_regressed``, apart from a bad
  signature; and two parallel uses reporting one counter admit one.

Every check goes through the account's verify lockout (attempts.py), as the codes do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..audit import RequestInfo
from ..limits import Permit
from ..outcomes import VerifyOutcome, VerifyStatus
from ..store import codes as challenge_rows
from ..store import factors as factor_rows
from ..store import passkeys as passkey_rows
from ..store.passkeys import WEBAUTHN, StoredPasskey
from .attempts import Parts
from .keys import KeyedHash

log = logging.getLogger("tfa_middleware")

CHALLENGE_SECONDS = 300
TIMEOUT_MS = 180_000  # the browser's hint: it gives up before the challenge expires
ADD, SIGN_IN = "passkey_add", "passkey_sign_in"  # the challenges' purposes in tfa_code
MAX_PASSKEYS = 20  # a user's; more is a mistake or an attack, and every sign-in lists them
_TRANSPORTS = {t.value for t in AuthenticatorTransport}


@dataclass(frozen=True, slots=True)
class Passkey:
    """One of the user's passkeys, as the account page lists it."""

    id: int
    label: str
    created_at: float
    last_used_at: float | None


def digest(credential_id: bytes) -> str:
    return hashlib.sha256(credential_id).hexdigest()


def _challenge_key(challenge: bytes) -> str:
    return hashlib.sha256(b"webauthn-challenge\0" + challenge).hexdigest()


def _descriptor(passkey: StoredPasskey) -> PublicKeyCredentialDescriptor:
    stored = json.loads(passkey.credential)
    transports = [AuthenticatorTransport(t) for t in stored.get("transports", []) if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(stored["id"]), transports=transports or None)


def _challenge_of(client_data_json: bytes) -> bytes | None:
    try:
        return parse_client_data_json(client_data_json).challenge
    except (WebAuthnException, ValueError, KeyError, TypeError):
        return None


class Passkeys:
    def __init__(self, parts: Parts) -> None:
        self.settings, self.store, self.attempts, self.trail, self.clock = parts
        self.rp_name = self.settings.branding.title or "tfa-middleware"
        # The user handle the authenticator keeps: the same for a user each time (a new passkey
        # on the same authenticator replaces the old), saying nothing of who the user is.
        self._handle = KeyedHash(self.settings.secret_keys, "webauthn-user-handle")

    async def of_user(self, interface: str, user_id: str) -> list[StoredPasskey]:
        return await passkey_rows.of_user(self.store, interface, user_id)

    # ------------------------------------------------------------------ adding one

    async def creation_options(self, interface: str, user_id: str) -> str | None:
        """The options of ``navigator.credentials.create`` (JSON), its challenge stored; None when
        the user has as many passkeys as they may."""
        iface = self.settings.interface(interface)
        existing = await passkey_rows.of_user(self.store, interface, user_id)
        if len(existing) >= MAX_PASSKEYS:
            return None
        challenge = secrets.token_bytes(32)
        options = generate_registration_options(
            rp_id=iface.rp_id,
            rp_name=self.rp_name,
            user_name=user_id,
            user_id=bytes.fromhex(self._handle(f"{interface}\0{user_id}")),
            user_display_name=f"{user_id} ({interface})",
            challenge=challenge,
            timeout=TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[_descriptor(p) for p in existing],
        )
        await self._store_challenge(interface, user_id, ADD, challenge)
        return options_to_json(options)

    async def add(
        self, interface: str, user_id: str, credential: str, label: str, request: RequestInfo | None
    ) -> VerifyOutcome:
        """Register the answer to :meth:`creation_options`; APPROVED (with the generation: a
        passkey added on the way in is the sign-in) or REJECTED, and nothing is stored."""
        now = self.clock()
        permit = await self.attempts.reserve(interface, user_id, now)
        if not permit.allowed:
            return self.attempts.refused(permit)
        iface = self.settings.interface(interface)
        try:
            parsed = parse_registration_credential_json(credential)
            challenge = _challenge_of(parsed.response.client_data_json)
            if challenge is None or not await self._spend(interface, user_id, ADD, challenge, now):
                return await self._refused(interface, user_id, now, permit, request, "challenge not live")
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=iface.rp_id,
                expected_origin=list(iface.origins),
            )
        except (WebAuthnException, ValueError) as exc:
            return await self._refused(interface, user_id, now, permit, request, _why(exc))
        transports = [str(t.value) for t in parsed.response.transports or []]
        stored = json.dumps(
            {
                "id": bytes_to_base64url(verified.credential_id),
                "public_key": bytes_to_base64url(verified.credential_public_key),
                "transports": transports,
            }
        )
        detail = {"factor": WEBAUTHN, "label": label, "aaguid": verified.aaguid}
        try:
            async with self.trail.recording(
                now, interface, user_id, "passkey_added", request, **detail
            ) as conn:
                added = await passkey_rows.add(
                    conn, interface, user_id, digest(verified.credential_id), stored,
                    verified.sign_count, label, now,
                )  # fmt: skip
                if added is None:
                    raise _Taken
                generation = await self.attempts.succeeded(conn, interface, user_id, now)
                await factor_rows.enrolled(conn, interface, user_id)
        except _Taken:
            return await self._refused(
                interface, user_id, now, permit, request, "credential registered already"
            )
        return VerifyOutcome(VerifyStatus.APPROVED, generation=generation, method=WEBAUTHN)

    # ------------------------------------------------------------------ signing in

    async def request_options(self, interface: str, user_id: str) -> str | None:
        """The options of ``navigator.credentials.get`` (JSON) listing the user's passkeys, its
        challenge stored; None for a user without one."""
        passkeys = await passkey_rows.of_user(self.store, interface, user_id)
        if not passkeys:
            return None
        challenge = secrets.token_bytes(32)
        options = generate_authentication_options(
            rp_id=self.settings.interface(interface).rp_id,
            challenge=challenge,
            timeout=TIMEOUT_MS,
            allow_credentials=[_descriptor(p) for p in passkeys],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        await self._store_challenge(interface, user_id, SIGN_IN, challenge)
        return options_to_json(options)

    async def verify(
        self, interface: str, user_id: str, credential: str, request: RequestInfo | None
    ) -> VerifyOutcome:
        """The answer to :meth:`request_options`. Only APPROVED lets anyone in."""
        if not credential.strip():
            return VerifyOutcome(VerifyStatus.MALFORMED, method=WEBAUTHN)
        if not await passkey_rows.of_user(self.store, interface, user_id):
            return VerifyOutcome(VerifyStatus.NEEDS_ENROLLMENT, method=WEBAUTHN)
        now = self.clock()
        permit = await self.attempts.reserve(interface, user_id, now)
        if not permit.allowed:
            return self.attempts.refused(permit)
        try:
            parsed = parse_authentication_credential_json(credential)
            found = await passkey_rows.find(self.store, digest(parsed.raw_id))
            if found is None or (found.interface, found.user_id) != (interface, user_id):
                return await self._refused(
                    interface, user_id, now, permit, request, "not a passkey of this user"
                )
            challenge = _challenge_of(parsed.response.client_data_json)
            if challenge is None or not await self._spend(interface, user_id, SIGN_IN, challenge, now):
                return await self._refused(interface, user_id, now, permit, request, "challenge not live")
            iface = self.settings.interface(interface)
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=iface.rp_id,
                expected_origin=list(iface.origins),
                credential_public_key=base64url_to_bytes(json.loads(found.credential)["public_key"]),
                credential_current_sign_count=0,  # ours is checked in the use's UPDATE
            )
        except (WebAuthnException, ValueError, KeyError) as exc:
            return await self._refused(interface, user_id, now, permit, request, _why(exc))
        return await self._accept(interface, user_id, found, verified.new_sign_count, now, permit, request)

    async def _accept(
        self,
        interface: str,
        user_id: str,
        found: StoredPasskey,
        counter: int,
        now: float,
        permit: Permit,
        request: RequestInfo | None,
    ) -> VerifyOutcome:
        """The use (its counter checked), the success and its event in one transaction."""
        detail = {"factor": WEBAUTHN, "factor_id": str(found.id)}
        try:
            async with self.trail.recording(now, interface, user_id, "verify_ok", request, **detail) as conn:
                if not await passkey_rows.use(conn, found, counter, now):
                    raise _CounterWentBack
                generation = await self.attempts.succeeded(conn, interface, user_id, now)
        except _CounterWentBack:
            log.warning(
                "%s user %s: passkey %d reported sign counter %d, not above %d: refused (a cloned "
                "authenticator, or a replay)", interface, user_id, found.id, counter, found.counter,
            )  # fmt: skip
            await self.trail.record(
                now, interface, user_id, "passkey_counter_regressed", request,
                factor_id=str(found.id), counter=str(counter), stored=str(found.counter),
            )  # fmt: skip
            return await self.attempts.rejected(
                interface, user_id, now, permit, request, WEBAUTHN, reason="sign counter went back"
            )
        return VerifyOutcome(VerifyStatus.APPROVED, generation=generation, method=WEBAUTHN)

    # ------------------------------------------------------------------ the challenges

    async def _store_challenge(self, interface: str, user_id: str, purpose: str, challenge: bytes) -> None:
        key, now = _challenge_key(challenge), self.clock()
        async with self.store.transaction() as conn:
            await factor_rows.touch(conn, interface, user_id, now)  # the user row the lockout counts on
            await challenge_rows.replace(
                conn, interface, user_id, purpose, key, now, CHALLENGE_SECONDS, attempts=1
            )

    async def _spend(self, interface: str, user_id: str, purpose: str, challenge: bytes, now: float) -> bool:
        """The challenge used, if it is this user's live one for ``purpose``: one statement."""
        return await challenge_rows.use(
            self.store, interface, user_id, purpose, _challenge_key(challenge), now
        )

    async def _refused(
        self, interface: str, user_id: str, now: float, permit: Permit, request: RequestInfo | None, why: str
    ) -> VerifyOutcome:
        log.info("%s user %s: passkey refused: %r", interface, user_id, why)
        return await self.attempts.rejected(interface, user_id, now, permit, request, WEBAUTHN, reason=why)


def _why(exc: Exception) -> str:
    """The library's reason, short (it may quote what the browser sent)."""
    return f"{type(exc).__name__}: {exc}"[:200]


class _Taken(Exception):
    """The credential id is registered already: nothing is stored."""


class _CounterWentBack(Exception):
    """The sign counter did not go up: the use is not recorded."""
