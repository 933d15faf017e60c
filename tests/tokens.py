"""JSON Web Tokens as a shop issues them, for the JWT resolver's tests: keys (made once per run),
signed tokens, the attacks' tokens (``alg: none``, an HMAC signature made with the public key),
and the scope a request carrying one arrives with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.warnings import InsecureKeyLengthWarning

SECRET = "a-shop-jwt-secret-for-tests-0123456789-abcdefgh"  # 47 bytes: long enough for HS256/384
OTHER_SECRET = "another-shop-jwt-secret-for-tests-0123456789-xyz"
COOKIE = "fastapiusersauth"
AUDIENCE = "fastapi-users:auth"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@cache
def private_key(kind: str, number: int = 0) -> PrivateKey:
    """``rsa`` or an EC curve's name (``secp256r1``...); ``number`` tells two keys of a kind apart."""
    del number  # part of the cache key only
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}[kind]
    return ec.generate_private_key(curve)


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def claims(user: Any = "42", lifetime: float | None = 3600, **more: Any) -> dict[str, Any]:
    """fastapi-users' claims: ``sub``, ``aud`` and ``exp`` (``lifetime`` from now; None: no exp)."""
    data: dict[str, Any] = {"sub": user, "aud": [AUDIENCE]}
    if lifetime is not None:
        data["exp"] = int(time.time() + lifetime)
    data.update(more)
    return {k: v for k, v in data.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    """A token signed as a shop signs it; short HMAC keys are allowed (fastapi-users' docs use one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, key, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """``alg: none`` (any spelling): a token with no signature at all."""
    return _segments({"alg": alg, "typ": "JWT"}, payload) + "."


def hmac_with_public_key(payload: dict[str, Any], pem: str) -> str:
    """The key-confusion attack: HS256 with the server's *public* key as the secret. PyJWT refuses
    to make one, so it is made by hand."""
    signing_input = _segments({"alg": "HS256", "typ": "JWT"}, payload)
    signature = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def with_payload(token: str, payload: dict[str, Any]) -> str:
    """The token with its payload replaced and the old signature kept (tampering)."""
    header, _, signature = token.split(".")
    return header + "." + _b64(json.dumps(payload).encode()) + "." + signature


def cookie_scope(token: str, name: str = COOKIE) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"cookie", f"{name}={token}".encode())]}


def bearer_scope(value: str) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"authorization", value.encode("latin-1"))]}
