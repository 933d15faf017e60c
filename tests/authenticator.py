"""A software authenticator for the tests that need to build a passkey's answers by hand: what a
browser and an authenticator would send back from ``navigator.credentials.create`` and ``.get``,
written from the WebAuthn spec's formats (client data JSON, authenticator data, a ``none``
attestation in CBOR, an ES256 signature with ``cryptography``), so a test can change any one
part (the origin, the RP ID, the challenge, the counter, the key that signs) and see it refused.

The browser tests use Chromium's own virtual authenticator instead (test_browser.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40  # authenticator data flags: user present, verified, attested data
ORIGIN = "https://shop.test"  # where the tests' passkeys are used: rp_id shop.test


def passkey_interfaces(**admin: Any) -> dict[str, Any]:
    """The harness's two interfaces with passkeys first, on rp_id shop.test (``admin``: more keys
    for the admin interface)."""
    identity = {"from": "callable", "path": "tests.harness:header_resolver"}
    common = {"factors": ["webauthn", "totp", "sms", "recovery"], "rp_id": "shop.test", "identity": identity}
    return {
        "admin": {"path_prefix": "/admin", **common, **admin},
        "customer": {"path_prefix": "/account", **common},
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One credential on one authenticator. ``counter``: its sign counter, raised at each
    assertion by ``step`` (0: an authenticator that keeps no counter)."""

    step: int = 1
    counter: int = 0
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        # COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y.
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )

    def create(
        self, options: str, origin: str, *, rp_id: str | None = None, challenge: str | None = None
    ) -> str:
        """The credential JSON a browser posts after ``navigator.credentials.create(options)``."""
        opts = json.loads(options)
        client_data = _client_data("webauthn.create", challenge or opts["challenge"], origin)
        attested = (
            bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self.cose_key()
        )
        auth_data = (
            _rp_hash(rp_id or opts["rp"]["id"]) + bytes([UP | UV | AT]) + struct.pack(">I", self.counter)
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data + attested})
        response = {"clientDataJSON": b64(client_data), "attestationObject": b64(attestation)}
        return self._credential({**response, "transports": ["internal"]})

    def get(
        self,
        options: str,
        origin: str,
        *,
        rp_id: str | None = None,
        challenge: str | None = None,
        counter: int | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        """The credential JSON a browser posts after ``navigator.credentials.get(options)``; the
        counter moves on by ``step`` unless ``counter`` says what to report."""
        opts = json.loads(options)
        if counter is None:
            self.counter += self.step
            counter = self.counter
        client_data = _client_data("webauthn.get", challenge or opts["challenge"], origin)
        auth_data = _rp_hash(rp_id or opts["rpId"]) + bytes([UP | UV]) + struct.pack(">I", counter)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = (signer or self.key).sign(signed, ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": b64(client_data),
            "authenticatorData": b64(auth_data),
            "signature": b64(signature),
        }
        return self._credential(response)

    def _credential(self, response: dict[str, Any]) -> str:
        credential_id = b64(self.credential_id)
        return json.dumps(
            {
                "id": credential_id,
                "rawId": credential_id,
                "type": "public-key",
                "response": response,
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform",
            }
        )


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()


def _rp_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()
