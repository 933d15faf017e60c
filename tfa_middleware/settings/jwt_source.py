"""``identity: {from: jwt}``: the shop's JSON Web Token, from a cookie or ``Authorization: Bearer``.

Everything that can be checked without a request is checked here, at load, by key path: where the
token comes from (exactly one of ``cookie`` and ``header``), the algorithms (never ``none``; one
family), and a key that fits them (exactly one of ``secret``, ``public_key``, ``public_key_file``;
an HMAC algorithm with a public key is the classic key-confusion attack, refused). When the
``jwt`` extra is installed the public key is also parsed and matched to the algorithms (RSA for
RS*/PS*, the right curve for ES*); :mod:`tfa_middleware.identity.tokens` builds the resolver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt, model_validator

from .types import NonEmpty, OneOrMore, SecretText, Section, ShopCookieName, between, invalid, raise_any

# The algorithms PyJWT verifies, by the kind of key each needs.
HMAC = {"HS256": 32, "HS384": 48, "HS512": 64}  # and the key length PyJWT thinks safe (bytes)
RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}  # the curve each one needs
ALGORITHMS = (*HMAC, *RSA, *EC)
_PUBLIC_PEM = ("-----BEGIN PUBLIC KEY-----", "-----BEGIN RSA PUBLIC KEY-----")


def _family(algorithm: str) -> str:
    return "HMAC" if algorithm in HMAC else "RSA" if algorithm in RSA else "EC"


def _algorithms(names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise invalid("must name at least one algorithm, e.g. [HS256]")
    for name in names:
        if name.lower() == "none":
            raise invalid("'none' is never accepted: a token without a signature proves nothing")
        if name not in ALGORITHMS:
            raise invalid(f"{name!r} is not one of {', '.join(ALGORITHMS)}")
    families = sorted({_family(n) for n in names})
    if len(families) > 1:
        raise invalid(f"mixes {' and '.join(families)} algorithms: one key verifies one family; list one")
    return tuple(dict.fromkeys(names))


class JwtSource(Section):
    """A JWT signed by the shop (fastapi-users' JWTStrategy, an SSO's access token)."""

    source: Literal["jwt"] = Field(default="jwt", alias="from")
    cookie: ShopCookieName | None = None  # fastapi-users' CookieTransport: fastapiusersauth
    header: Literal["authorization"] | None = None  # Authorization: Bearer <token>
    algorithms: Annotated[OneOrMore, AfterValidator(_algorithms)] = ("HS256",)
    secret: SecretText | None = None  # HS*: the shop's signing secret
    public_key: NonEmpty | None = None  # RS*, PS*, ES*: the PEM text of the public key
    public_key_file: NonEmpty | None = None  # ... or a file holding it
    audience: OneOrMore | None = None  # fastapi-users: fastapi-users:auth
    issuer: OneOrMore | None = None
    leeway_seconds: Annotated[StrictInt, between(0, 300)] = 0
    claim: NonEmpty = "sub"  # the claim holding the user id
    # A claim naming this login (jti, sid): the proof is bound to it, so a new login asks again.
    session_claim: NonEmpty | None = None
    roles_claim: NonEmpty | None = None  # a claim with the user's role or roles (manage.allow_roles)

    @model_validator(mode="after")
    def _consistent(self) -> JwtSource:
        raise_any(self._source_problems() + self._key_problems())
        return self

    def _source_problems(self) -> list[tuple[str, str]]:
        if (self.cookie is None) == (self.header is None):
            where = "header" if self.cookie is not None else ""
            either = "cookie: NAME (e.g. fastapiusersauth) or header: authorization"
            return [(where, f"give exactly one of {either}")]
        return []

    def _key_problems(self) -> list[tuple[str, str]]:
        given = [k for k in ("secret", "public_key", "public_key_file") if getattr(self, k) is not None]
        names = ", ".join(self.algorithms)
        verify = "verifies" if len(self.algorithms) == 1 else "verify"
        hmac = _family(self.algorithms[0]) == "HMAC"
        if not given:
            if hmac:
                return [("secret", f"is required: {names} {verify} with the shop's signing secret")]
            return [("public_key", f"is required (or public_key_file): {names} {verify} with a public key")]
        if len(given) > 1:
            return [(given[-1], f"give one key, not {' and '.join(given)}")]
        if hmac and self.secret is None:
            why = "a public key used as an HMAC secret lets anybody who has it sign tokens"
            return [(given[0], f"{names} {verify} with the shop's secret, not a key ({why}): give secret")]
        if not hmac and self.secret is not None:
            return [("secret", f"{names} {verify} with a public key: give public_key or public_key_file")]
        if self.secret is not None:
            if self.secret.reveal().lstrip().startswith("-----BEGIN"):
                return [("secret", "looks like a PEM key; an HMAC secret is the shop's secret text")]
            return []
        return self._public_key_problems(given[0])

    def _public_key_problems(self, key: str) -> list[tuple[str, str]]:
        try:
            text = self.public_key_text()
        except OSError as exc:
            return [(key, f"cannot read {self.public_key_file!r}: {exc.strerror or exc}")]
        if "PRIVATE KEY" in text:
            return [(key, "is a private key: give only its public half (openssl pkey -pubout)")]
        if not any(marker in text for marker in _PUBLIC_PEM):
            return [(key, "expected a PEM public key (-----BEGIN PUBLIC KEY----- ...)")]
        problem = public_key_problem(text, self.algorithms)
        return [(key, problem)] if problem else []

    def public_key_text(self) -> str:
        """The PEM text, from ``public_key`` or read from ``public_key_file``."""
        if self.public_key is not None:
            return self.public_key
        assert self.public_key_file is not None
        return Path(self.public_key_file).read_text(encoding="utf-8")

    @property
    def short_secret(self) -> bool:
        """The secret is shorter than PyJWT's advice for one of the HMAC algorithms."""
        size = len(self.secret.reveal().encode()) if self.secret is not None else 0
        return self.secret is not None and any(size < HMAC[a] for a in self.algorithms if a in HMAC)


def public_key_problem(pem: str, algorithms: tuple[str, ...]) -> str | None:
    """What is wrong with a public key for ``algorithms``, when ``cryptography`` (the ``jwt`` extra)
    can tell; without it, the resolver's build says that the extra is missing."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        return None
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        return "is not a readable PEM public key"
    if _family(algorithms[0]) == "RSA":
        return None if isinstance(key, rsa.RSAPublicKey) else f"{algorithms[0]} needs an RSA public key"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return f"{algorithms[0]} needs an elliptic-curve public key"
    wrong = [a for a in algorithms if EC[a] != key.curve.name]
    return f"a {key.curve.name} key cannot verify {', '.join(wrong)}" if wrong else None
