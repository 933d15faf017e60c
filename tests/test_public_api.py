"""The public names (issue 13): ``__all__``, and ``second_factor()``, how the app reads the proof."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import tfa_middleware
from tests.harness import ADMIN_PHONE, Harness
from tfa_middleware import Proof, errors, second_factor

# Raised and handled inside the package; a shop never sees them.
# Raised and answered inside the middleware's own pages (a hostile path, an oversized form) or
# resolved by the service: a shop never sees them.
INTERNAL_ERRORS = {
    "UnusableIdentity",
    "ProviderUserNotFound",
    "HostilePath",
    "FormTooLarge",
    "EnrollmentNotAllowed",
}


# ---------------------------------------------------------------------------- __all__


def test_every_name_in_all_imports() -> None:
    assert tfa_middleware.__all__ == sorted(set(tfa_middleware.__all__))
    fresh = importlib.import_module("tfa_middleware")
    for name in fresh.__all__:
        assert getattr(fresh, name) is not None, name  # what `from tfa_middleware import name` does


def test_all_lists_every_exception_a_shop_catches() -> None:
    public = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.TwoFactorError)
    }
    assert public - INTERNAL_ERRORS <= set(tfa_middleware.__all__)
    assert {"TwoFactorMiddleware", "TwoFactor", "second_factor", "AuditEvent", "load_settings"} <= set(
        tfa_middleware.__all__
    )


def test_the_old_scope_key_still_imports() -> None:
    assert importlib.import_module("tfa_middleware").SCOPE_KEY == "tfa_middleware"


# ---------------------------------------------------------------------------- second_factor()


async def proof_page(request: Request) -> JSONResponse:
    proof = second_factor(request)
    same = second_factor(request.scope)
    assert proof == same
    if proof is None:
        return JSONResponse(None)
    return JSONResponse({"user": proof.user_id, "interface": proof.interface, "method": proof.method})


def proof_shop() -> Starlette:
    return Starlette(routes=[Route("/admin/orders", proof_page), Route("/admin/login", proof_page)])


async def test_second_factor_reads_the_proof_the_middleware_checked(make_harness: Any) -> None:
    h: Harness = await make_harness(proof_shop())
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await h.pass_challenge("alice")
    alice = {"x-test-user": "alice", "accept": "application/json"}
    passed = await h.client.get("/admin/orders", headers=alice)
    assert passed.json() == {"user": "alice", "interface": "admin", "method": "sms"}
    # An exempt path is not checked: no proof for the app, even with the cookie.
    assert (await h.client.get("/admin/login", headers=alice)).json() is None


def test_second_factor_believes_only_a_proof() -> None:
    proof = Proof("admin", "alice", 1, 1_700_000_000, "sms", "")
    assert second_factor({"type": "http", "tfa_middleware": proof}) is proof
    assert second_factor({"type": "http"}) is None
    assert second_factor({"type": "http", "tfa_middleware": {"user_id": "alice"}}) is None
