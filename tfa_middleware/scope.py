"""What the app reads from a request the middleware let through: :func:`second_factor`.

The middleware puts the verified :class:`~tfa_middleware.proof.Proof` in the scope under one key;
this is the public way to read it back, so the key stays ours to change.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.types import Scope

from .middleware import SCOPE_KEY
from .proof import Proof


def second_factor(request_or_scope: HTTPConnection | Scope) -> Proof | None:
    """The second factor the middleware checked for this request (a Starlette or FastAPI
    ``Request``/``WebSocket``, or a raw ASGI scope), or None::

        async def orders(request: Request) -> Response:
            proof = second_factor(request)
            if proof is None:
                raise HTTPException(403)  # the middleware did not vouch for this request
            return JSONResponse({"user": proof.user_id, "via": proof.method})

    None on paths the middleware does not protect (no interface, ``exempt``, the shop's logout),
    for nobody logged in, and for a user let through without a phone by ``on_missing_phone: skip``.
    Only the request the middleware let through with a valid proof carries one.
    """
    scope = request_or_scope.scope if isinstance(request_or_scope, HTTPConnection) else request_or_scope
    proof = scope.get(SCOPE_KEY)
    # Only our own Proof counts: anything else under the key was not put there by the middleware.
    return proof if isinstance(proof, Proof) else None
