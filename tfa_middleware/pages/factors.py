"""The user's own factor pages: the authenticator app's set-up (``app``) and the account page
(``account``: the apps, renamed or removed, the recovery codes, the remembered browsers).

Every change needs a fresh second factor (``phone_change_fresh_seconds``, as the phone change),
never a remembered browser's proof. The one exception is a first app, set up on the way in by a
user who has no factor yet (the enrollment, as for a first phone): its first code issues the proof.
Recovery codes are shown in the answer that made them, once; no later page can show them again.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import RedirectResponse, Response

from ..errors import InvalidInput
from ..i18n import N_
from ..service import FEW_LEFT, EnrollmentStatus, VerifyStatus
from .kit import (
    FACTOR_NEEDED,
    PASSKEY_FAILED,
    PageContext,
    PageKit,
    browser_row,
    codes_page,
    missing_factors,
)

# What the account page says after a change (its ?done=).
DONE = {
    "app": N_("Your authenticator app is set up: sign in with its codes from now on."),
    "renamed": N_("The name is saved."),
    "removed": N_("Removed."),
    "forgotten": N_("That browser is forgotten: it will be asked for a code at its next request."),
    "passkey": N_("Your passkey is added: use it at your next sign-in."),
}


def reauthenticate(ctx: PageContext, page: str) -> Response:
    """Ask for a second factor first; the challenge sends the user back to ``page`` afterwards."""
    back = f"{ctx.iface.pages_path}/{page}"
    return RedirectResponse(f"{ctx.base}/challenge?reauth=1&next={back}", status_code=303)


class FactorPages:
    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.service = kit.service
        self.factors = kit.service.factors

    # ------------------------------------------------------------------ the app's set-up

    async def _enrolling(self, ctx: PageContext) -> EnrollmentStatus | None:
        """The status when this user may set up an app on the way in (no factor yet), else None."""
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        return status if status.needs_enrollment and not status.pending_assigned else None

    async def app_page(self, ctx: PageContext) -> Response:
        if not self.kit.fresh(ctx) and await self._enrolling(ctx) is None:
            return reauthenticate(ctx, "app")
        app = await self.factors.pending_app(ctx.iface.name, ctx.identity.user_id)
        if app is None:
            return RedirectResponse(ctx.url("account" if ctx.proof else "enroll"), status_code=303)
        return self.kit.render(ctx, "app.html", 200, app=app)

    async def app_post(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        enrolling = not self.kit.fresh(ctx)
        if enrolling and await self._enrolling(ctx) is None:
            return reauthenticate(ctx, "app")
        name, user_id = ctx.iface.name, ctx.identity.user_id
        action = form.get("action", "")
        if action == "begin":
            await self.factors.begin_app(name, user_id, request=ctx.request)
            return RedirectResponse(ctx.url("app"), status_code=303)
        if action == "cancel":
            app = await self.factors.pending_app(name, user_id)
            if app is not None:
                await self.factors.remove(name, user_id, app.factor_id, request=ctx.request)
            return RedirectResponse(ctx.url("enroll" if enrolling else "account"), status_code=303)
        if action != "confirm":
            raise InvalidInput(N_("Unknown action."))
        outcome = await self.factors.confirm_app(name, user_id, form.get("code", ""), request=ctx.request)
        if outcome.status is VerifyStatus.APPROVED:
            response = RedirectResponse(ctx.url("account", done="app"), status_code=303)
            if enrolling:  # the first factor: its first code is the sign-in
                await self.kit.set_proof_or_setup(response, ctx, outcome.generation, outcome.method)
            return response
        app = await self.factors.pending_app(name, user_id)
        if app is None:
            return RedirectResponse(ctx.url("account" if not enrolling else "enroll"), status_code=303)
        error = self.kit.verify_error(outcome, ctx.lang, "totp")
        return self.kit.render(ctx, "app.html", 400, app=app, error=error)

    # ------------------------------------------------------------------ the account page

    async def account_page(self, ctx: PageContext) -> Response:
        if not self.kit.fresh(ctx):
            return reauthenticate(ctx, "account")
        if ctx.proof is not None and ctx.proof.interface != ctx.iface.name:
            return await self._setting_up(ctx)
        done = DONE.get(ctx.query.get("done", ""), "")
        failed = PASSKEY_FAILED.get(ctx.query.get("failed", ""), "")
        return await self._account(ctx, notice=ctx.lang.gettext(done), error=ctx.lang.gettext(failed))

    async def _setting_up(self, ctx: PageContext) -> Response:
        """With a set-up proof: what is still missing, or, once nothing is, the real proof."""
        assert ctx.proof is not None
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        missing = missing_factors(ctx.iface, status.factors)
        if missing:  # one whole sentence for each factor still missing
            wanted = " ".join(
                ctx.lang.gettext(FACTOR_NEEDED[kind]) for kind in missing if kind in FACTOR_NEEDED
            )
            return await self._account(ctx, notice=wanted)
        if status.generation != ctx.proof.generation:  # reset meanwhile: start again
            return reauthenticate(ctx, "account")
        response = await self._account(ctx, notice=ctx.lang.gettext("All set: you can continue."))
        await self.kit.set_proof(response, ctx, ctx.proof.generation, ctx.proof.method)
        self.kit.clear_setup(response, ctx)
        return response

    async def account_post(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        if not self.kit.fresh(ctx):
            return reauthenticate(ctx, "account")
        name, user_id, request = ctx.iface.name, ctx.identity.user_id, ctx.request
        action = form.get("action", "")
        if action == "add_app":
            await self.factors.begin_app(name, user_id, request=request)
            return RedirectResponse(ctx.url("app"), status_code=303)
        if action == "recovery_codes":
            codes = await self.factors.issue_recovery_codes(name, user_id, request=request)
            return codes_page(self.kit, ctx, codes, ctx.url("account"))
        try:
            return await self._change(ctx, action, form)
        except InvalidInput as exc:
            return await self._account(ctx, error=self.kit.explain(ctx, exc), code=400)

    async def _change(self, ctx: PageContext, action: str, form: Mapping[str, str]) -> Response:
        name, user_id, request = ctx.iface.name, ctx.identity.user_id, ctx.request
        if action in ("rename", "remove"):
            factor_id = _number(form.get("factor_id", ""))
            if action == "rename":
                await self.factors.rename(name, user_id, factor_id, form.get("label", ""), request=request)
                return RedirectResponse(ctx.url("account", done="renamed"), status_code=303)
            await self.factors.remove(name, user_id, factor_id, request=request)
            return RedirectResponse(ctx.url("account", done="removed"), status_code=303)
        if action == "forget_browser":
            browser_id = _number(form.get("browser_id", ""))
            await self.factors.forget_browser(name, user_id, browser_id, request=request)
            return RedirectResponse(ctx.url("account", done="forgotten"), status_code=303)
        raise InvalidInput(N_("Unknown action."))

    async def _account(
        self, ctx: PageContext, *, notice: str = "", error: str = "", code: int = 200
    ) -> Response:
        name, user_id = ctx.iface.name, ctx.identity.user_id
        status = await self.service.status(name, user_id)
        factors = await self.factors.of_user(name, user_id)
        browsers = await self.factors.remembered_browsers(name, user_id)
        apps, passkeys = (
            [
                {
                    "id": f.id,
                    "label": f.label,
                    "added": ctx.lang.when(f.created_at),
                    "used": ctx.lang.when(f.last_used_at),
                }
                for f in factors
                if f.kind == kind and f.confirmed
            ]
            for kind in ("totp", "webauthn")
        )
        allowed = ctx.iface.factors
        return self.kit.render(
            ctx,
            "account.html",
            code,
            status=status,
            apps=apps,
            passkeys=passkeys,
            recovery_left=sum(1 for f in factors if f.kind == "recovery" and f.last_used_at is None),
            few_left=FEW_LEFT,
            sms_allowed="sms" in allowed,
            totp_allowed="totp" in allowed,
            recovery_allowed="recovery" in allowed,
            webauthn_allowed="webauthn" in allowed,
            origins=ctx.iface.origins,
            notice=notice,
            error=error,
            browsers=[
                browser_row(b, ctx.lang, self.factors.browsers.is_this(b, ctx.remembered)) for b in browsers
            ],
            remember_days=ctx.iface.remember_days,
            browser_page="account",
        )


def _number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidInput(N_("Unknown item."))
    return int(text)
