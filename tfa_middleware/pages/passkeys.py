"""The passkey steps of the pages (``<pages_path>/passkey``, POST only): the options a page's script
hands to ``navigator.credentials.create/get`` (JSON), and the answer of ``create``, which adds the
passkey. The answer of ``get`` goes to the challenge's own ``verify`` (factor ``webauthn``), like a
code, so a passkey sign-in is remembered, re-checked and locked out the same way.

Adding a passkey needs what adding an app needs: a fresh second factor (or the set-up proof of
``require_factors``), or, for a user with no factor yet, nothing more than the shop's login (the
enrollment, as for a first phone or app): its registration is then the sign-in. Without
JavaScript a page posts no credential: the answer says passkeys need it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse, RedirectResponse, Response

from ..errors import InvalidInput
from ..i18n import N_
from ..service import VerifyStatus
from .kit import PageContext, PageKit


class PasskeyPages:
    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.service = kit.service
        self.factors = kit.service.factors

    async def post(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        action = form.get("action", "")
        if action == "sign_in_options":
            options = await self.factors.passkey_request_options(ctx.iface.name, ctx.identity.user_id)
            if options is None:
                return JSONResponse({"error": "no passkey"}, status_code=404)
            return _json(options)
        if action not in ("add_options", "add"):
            raise InvalidInput(N_("Unknown action."))
        enrolling = not self.kit.fresh(ctx)
        if enrolling and not await self._may_enroll(ctx):
            if action == "add_options":
                return JSONResponse({"error": "a fresh second factor is needed"}, status_code=403)
            back = f"{ctx.iface.pages_path}/account"
            return RedirectResponse(f"{ctx.base}/challenge?reauth=1&next={back}", status_code=303)
        if action == "add_options":
            return _json(await self.factors.passkey_creation_options(ctx.iface.name, ctx.identity.user_id))
        return await self._add(ctx, form, enrolling)

    async def _may_enroll(self, ctx: PageContext) -> bool:
        """A user with no factor yet, whose phone no manager set: the way in, as for an app."""
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        return status.needs_enrollment and not status.pending_assigned

    async def _add(self, ctx: PageContext, form: Mapping[str, str], enrolling: bool) -> Response:
        page = "enroll" if enrolling else "account"
        credential = form.get("code", "")
        if not credential.strip():
            return RedirectResponse(ctx.url(page, failed="javascript"), status_code=303)
        outcome = await self.factors.add_passkey(
            ctx.iface.name, ctx.identity.user_id, credential, label=form.get("label", ""), request=ctx.request
        )
        if outcome.status is not VerifyStatus.APPROVED:
            failed = "locked" if outcome.status in (VerifyStatus.LOCKED, VerifyStatus.WAIT) else "passkey"
            return RedirectResponse(ctx.url(page, failed=failed), status_code=303)
        response = RedirectResponse(ctx.url("account", done="passkey"), status_code=303)
        if enrolling:  # the first factor: its registration is the sign-in
            await self.kit.set_proof_or_setup(response, ctx, outcome.generation, outcome.method)
        return response


def _json(options: str) -> Response:
    # The options as py_webauthn wrote them (base64url fields), for the page's script alone.
    return Response(options, media_type="application/json")
