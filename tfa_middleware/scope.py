"""What the app reads from a request the middleware let through: :func:`second_factor`.

The middleware puts the verified :class:`~tfa_middleware.proof.Proof` in the scope under one key
(the WSGI middleware in the environ, under another);
this is the public way to read it back, so the key stays ours to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import Scope

from .middleware import SCOPE_KEY
from .proof import Proof
from .wsgi import ENVIRON_KEY


def second_factor(request_or_scope: HTTPConnection | Scope | Any) -> Proof | None:
    """The second factor the middleware checked for this request, or None. Under ASGI: a
    Starlette or FastAPI ``Request``/``WebSocket``, or a raw scope; under WSGI
    (``tfa_middleware.wsgi``): a Flask/Werkzeug request (``.environ``), a Django request (``.META``)
    or the environ itself::

        async def orders(request: Request) -> Response:
            proof = second_factor(request)
            if proof is None:
                raise HTTPException(403)  # the middleware did not vouch for this request
            return JSONResponse({"user": proof.user_id, "via": proof.method})

    None on paths the middleware does not protect (no interface, ``exempt``, the shop's logout),
    for nobody logged in, and for a user let through without a phone by ``on_missing_phone: skip``.
    Only the request the middleware let through with a valid proof carries one.
    """
    if isinstance(request_or_scope, HTTPConnection):
        proof = request_or_scope.scope.get(SCOPE_KEY)
    else:
        # A WSGI request keeps its environ as .environ (Werkzeug) or .META (Django).
        found = getattr(request_or_scope, "environ", None) or getattr(request_or_scope, "META", None)
        mapping = found if isinstance(found, Mapping) else request_or_scope
        proof = (mapping.get(ENVIRON_KEY) or mapping.get(SCOPE_KEY)) if isinstance(mapping, Mapping) else None
    # Only our own Proof counts: anything else under the key was not put there by the middleware.
    return proof if isinstance(proof, Proof) else None
