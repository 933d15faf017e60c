"""The keys of the factors' secrets, derived from ``secret_keys``: the newest key seals, every key
opens (rotation, as for the proof cookie).

- :class:`SecretBox`: an authenticator app's secret is stored encrypted (AES-256-GCM; the key from
  HKDF-SHA256 over one ``secret_keys`` entry, the row's interface, user and kind bound as associated
  data, so a sealed value moved to another user's row does not open). The stored text names the
  key that sealed it by a short fingerprint, so opening tries one key, not all.
- :class:`KeyedHash`: a recovery code is stored only as an HMAC-SHA256 under a derived key;
  :meth:`KeyedHash.all` gives the digests under every key, for a look-up that still finds codes
  hashed before a rotation.

Why derived keys: one ``secret_keys`` entry signs proofs, CSRF tokens and these; HKDF with a
purpose label gives each use its own key, so no value made for one purpose is valid for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..settings import Secret

_SEALED = "v1"  # the stored format: v1.<key fingerprint>.<base64url(nonce + ciphertext)>


def derive(secret: Secret, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` from one ``secret_keys`` entry."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tfa-middleware", info=purpose.encode()).derive(
        secret.reveal().encode()
    )


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"fingerprint\0" + key).hexdigest()[:8]


class SecretBox:
    """Seals and opens a factor's secret; the newest of ``secret_keys`` seals."""

    def __init__(self, secret_keys: Sequence[Secret], purpose: str = "factor-secret") -> None:
        keys = [derive(key, purpose) for key in secret_keys]
        self._newest = keys[-1]
        self._by_fingerprint = {_fingerprint(key): key for key in keys}

    def seal(self, plain: bytes, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._newest).encrypt(nonce, plain, bound_to.encode())
        text = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_SEALED}.{_fingerprint(self._newest)}.{text}"

    def open(self, stored: str, bound_to: str) -> bytes | None:
        """The secret, or None: a key no longer in ``secret_keys``, another row's value, or a
        value changed in the database (never an exception: the factor then simply fails)."""
        version, _, rest = stored.partition(".")
        fingerprint, _, text = rest.partition(".")
        key = self._by_fingerprint.get(fingerprint)
        if version != _SEALED or key is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            return AESGCM(key).decrypt(raw[:12], raw[12:], bound_to.encode())
        except (InvalidTag, ValueError):
            return None

    def is_newest(self, stored: str) -> bool:
        return stored.split(".", 2)[1:2] == [_fingerprint(self._newest)]


class KeyedHash:
    """HMAC-SHA256 under keys derived from ``secret_keys``: the newest makes, all are looked up."""

    def __init__(self, secret_keys: Sequence[Secret], purpose: str) -> None:
        self._keys = [derive(key, purpose) for key in secret_keys]

    def __call__(self, message: str) -> str:
        return self._digest(self._keys[-1], message)

    def all(self, message: str) -> list[str]:
        """The digest under every key, newest first."""
        return [self._digest(key, message) for key in reversed(self._keys)]

    @staticmethod
    def _digest(key: bytes, message: str) -> str:
        return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
