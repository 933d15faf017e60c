"""The sign-in pages: the challenge, sending a code, checking it, enrolling a first phone, and
signing out of the second factor.

GET never changes anything and never sends a text message (a GET must not cost money). A code that
does not let the user in gets one status and one page, whatever the reason (no oracle).
"""

from __future__ import annotations

from collections.abc import Mapping

from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from ..errors import EnrollmentNotAllowed, InvalidInput, InvalidPhoneNumber
from ..i18n import N_, Language
from ..service import (
    FEW_LEFT,
    EnrollmentStatus,
    Grace,
    SendStatus,
    VerifyOutcome,
    VerifyStatus,
    grace_eligible,
)
from .kit import EXEMPT, GRACE, PASSKEY_FAILED, REMEMBERED, PageContext, PageKit, phone_fields


class SignInPages:
    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.service = kit.service

    # ------------------------------------------------------------------ GET

    async def challenge(self, ctx: PageContext) -> Response:
        reauth = bool(ctx.query.get("reauth"))
        if ctx.proof is not None and not reauth:
            return RedirectResponse(ctx.next_url, status_code=303)
        if ctx.remembered and not reauth:  # never for a re-check: that wants the person
            recalled = await self.service.factors.recall_browser(
                ctx.iface.name, ctx.identity.user_id, ctx.remembered
            )
            if recalled is not None:
                generation, browser = recalled
                response = RedirectResponse(ctx.next_url, status_code=303)
                if not await self.kit.set_proof_or_setup(response, ctx, generation, REMEMBERED, browser):
                    response.headers["location"] = ctx.url("account", setup="1")
                return response
        if not reauth and (exempt := await self._exempt(ctx)) is not None:
            return exempt
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if status.needs_enrollment:
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        return await self._challenge(ctx, status)

    async def _exempt(self, ctx: PageContext) -> Response | None:
        """A manager's exemption in force: a proof without a code, which dies with the exemption
        (and never meets a step-up rule); None without one."""
        name, user_id = ctx.iface.name, ctx.identity.user_id
        exemption = await self.service.rollout.exemption(name, user_id)
        if exemption is None:
            return None
        response = RedirectResponse(ctx.next_url, status_code=303)
        generation = await self.service.generation(name, user_id)
        await self.kit.set_proof(response, ctx, generation, EXEMPT, until=exemption.until)
        return response

    async def enroll_page(self, ctx: PageContext) -> Response:
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if not status.needs_enrollment:
            return RedirectResponse(ctx.url("challenge"), status_code=303)
        return await self._enroll(ctx, status)

    async def logout_page(self, ctx: PageContext) -> Response:
        return self.kit.render(ctx, "logout.html", 200)

    # ------------------------------------------------------------------ POST

    async def send(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        channel = form.get("channel", "sms")
        outcome = await self.service.send_code(
            ctx.iface.name, ctx.identity.user_id, channel=channel, request=ctx.request, locale=ctx.lang.code
        )
        if outcome.status is SendStatus.NEEDS_ENROLLMENT:
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if outcome.status is SendStatus.REFUSED:
            error, code = self.kit.send_refusal(outcome, ctx.lang)
            if status.needs_enrollment:
                return await self._enroll(ctx, status, send_error=error, code=code)
            return await self._challenge(ctx, status, send_error=error, code=code, factor="sms")
        if status.needs_enrollment:
            return RedirectResponse(ctx.url("enroll", sent="1"), status_code=303)
        # The texted code's own page, even for a user whose first way is a passkey or an app.
        return RedirectResponse(ctx.url("challenge", sent="1", factor="sms"), status_code=303)

    async def verify(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        name, user_id = ctx.iface.name, ctx.identity.user_id
        factor = form.get("factor", "sms")
        if factor not in ctx.iface.factors:
            raise InvalidInput(N_("Unknown way to sign in."))
        outcome = await self.service.verify_code(
            name, user_id, form.get("code", ""), request=ctx.request, factor=factor
        )
        if outcome.status is VerifyStatus.APPROVED:
            return await self._approved(ctx, outcome, remember=form.get("remember") == "1")
        if outcome.status is VerifyStatus.NEEDS_ENROLLMENT:
            if factor != "sms":  # no app, or no recovery code left: the other ways
                return RedirectResponse(ctx.url("challenge"), status_code=303)
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        error = self.kit.verify_error(outcome, ctx.lang, factor)
        status = await self.service.status(name, user_id)  # only now: the page to show it on
        # One status for every refusal of a code: wrong, expired, used, waiting or locked (no oracle).
        if status.needs_enrollment:
            return await self._enroll(ctx, status, error=error, code=400)
        return await self._challenge(ctx, status, error=error, code=400, factor=factor)

    async def _approved(self, ctx: PageContext, outcome: VerifyOutcome, *, remember: bool) -> Response:
        """The proof for a right code (and the browser remembered, when the user asked); after a
        recovery code, a page that says how many are left."""
        name, user_id = ctx.iface.name, ctx.identity.user_id
        response: Response = RedirectResponse(ctx.next_url, status_code=303)
        if outcome.method == "recovery":
            left = await self.service.factors.recovery_left(name, user_id)
            response = self.kit.render(ctx, "recovery_used.html", 200, left=left, few=left <= FEW_LEFT)
        browser = ""
        if remember and ctx.iface.remember_days:
            token, browser = await self.service.factors.remember_browser(
                name, user_id, outcome.generation, request=ctx.request
            )
            self.kit.set_remembered(response, ctx, token)
        if not await self.kit.set_proof_or_setup(response, ctx, outcome.generation, outcome.method, browser):
            # A factor require_factors asks for is missing: it is set up before the shop opens.
            response.status_code = 303
            response.headers["location"] = ctx.url("account", setup="1")
        return response

    async def enroll(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        name, user_id = ctx.iface.name, ctx.identity.user_id
        if form.get("action") == "skip":
            return await self._skip(ctx)
        try:
            if form.get("action") == "keep":
                await self.service.keep_phone(name, user_id, request=ctx.request)
            else:
                await self.service.begin_enrollment(
                    name, user_id, form.get("country_code", ""), form.get("phone", ""), request=ctx.request
                )
        except EnrollmentNotAllowed as exc:
            status = await self.service.status(name, user_id)
            if status.needs_enrollment:  # e.g. a number the administrator set: say why it stays
                return await self._enroll(ctx, status, error=self.kit.explain(ctx, exc), code=400)
            return RedirectResponse(ctx.url("challenge"), status_code=303)
        except InvalidPhoneNumber as exc:
            status = await self.service.status(name, user_id)
            return await self._enroll(ctx, status, error=self.kit.explain(ctx, exc), code=400, form=form)
        # The user just asked, by POST, to set up this number: sending its code now saves a click.
        outcome = await self.service.send_code(name, user_id, request=ctx.request, locale=ctx.lang.code)
        if outcome.status is SendStatus.REFUSED:
            # The number is stored, but no code went to it (a cooldown after the previous
            # number's, say): the page must not claim one did. Two whole sentences.
            message, code = self.kit.send_refusal(outcome, ctx.lang)
            status = await self.service.status(name, user_id)
            unsent = ctx.lang.html(
                "No code was sent to %(phone)s yet.", phone=ctx.lang.ltr(outcome.masked_phone)
            )
            unsent = unsent + " " + message
            return await self._enroll(ctx, status, send_error=unsent, code=code)
        return RedirectResponse(ctx.url("enroll", sent="1"), status_code=303)

    async def _skip(self, ctx: PageContext) -> Response:
        """enroll_grace: the user without a factor goes on without one, this once (a login
        counted) or until the grace's date; after it, the enrollment page again, without the offer."""
        name, user_id = ctx.iface.name, ctx.identity.user_id
        status = await self.service.status(name, user_id)
        left = None
        if grace_eligible(status) and not ctx.query.get("reauth"):
            left = await self.service.rollout.skip_enrollment(name, user_id, request=ctx.request)
        if left is None:
            error = ctx.lang.gettext(
                "Setting up two-step verification can't wait any longer: please set it up now."
            )
            return await self._enroll(ctx, status, error=error, code=400)
        response = RedirectResponse(ctx.next_url, status_code=303)
        grace = ctx.iface.enroll_grace
        until = grace.ends_at if grace is not None else None
        generation = await self.service.generation(name, user_id)
        await self.kit.set_proof(response, ctx, generation, GRACE, until=until)
        return response

    async def logout(self, ctx: PageContext, _form: Mapping[str, str]) -> Response:
        await self.service.sign_out(ctx.iface.name, ctx.identity.user_id, request=ctx.request)
        response = RedirectResponse(ctx.url("challenge"), status_code=303)
        self.kit.clear_proof(response, ctx)
        self.kit.clear_remembered(response, ctx)  # the generation bump forgot it already
        return response

    # ------------------------------------------------------------------ the two pages they show

    async def _challenge(
        self,
        ctx: PageContext,
        status: EnrollmentStatus,
        *,
        error: str = "",
        send_error: str = "",
        code: int = 200,
        factor: str = "",
    ) -> Response:
        sent = bool(ctx.query.get("sent"))
        waits = await self.kit.waits(ctx)
        ways = ways_in(status, ctx.iface.factors) or ["sms"]
        factor = factor or ctx.query.get("factor", "")
        if factor not in ways:
            factor = ways[0]
        return self.kit.render(
            ctx,
            "challenge.html",
            code,
            factor=factor,
            other_ways=[(kind, self._way_text(kind, status, ctx)) for kind in ways if kind != factor],
            remember_days=ctx.iface.remember_days if not ctx.query.get("reauth") else 0,
            masked_phone=status.masked_phone,
            notice=self._sent_to(ctx, status.masked_phone) if sent else "",
            # After a wrong try, or a resend refused, the user has a code: lead with the form.
            sent=sent or bool(error) or bool(send_error),
            send_error=send_error,
            error=error,
            supports_call=self.service.provider.supports_call,
            origins=ctx.iface.origins,
            **waits,
        )

    @staticmethod
    def _sent_to(ctx: PageContext, masked_phone: str | None) -> Markup:
        return ctx.lang.html("We sent a code to %(phone)s.", phone=ctx.lang.ltr(masked_phone or ""))

    @staticmethod
    def _way_text(kind: str, status: EnrollmentStatus, ctx: PageContext) -> str:
        _ = ctx.lang.gettext
        if kind == "sms":
            return ctx.lang.html("Text a code to %(phone)s", phone=ctx.lang.ltr(status.masked_phone or ""))
        if kind == "webauthn":
            return _("Use a passkey or security key")
        if kind == "totp":
            return _("Use your authenticator app")
        return _("Use a recovery code")

    async def _enroll(
        self,
        ctx: PageContext,
        status: EnrollmentStatus,
        *,
        error: str = "",
        send_error: str = "",
        code: int = 200,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        sent = bool(ctx.query.get("sent"))
        waits = await self.kit.waits(ctx) if status.pending_masked_phone else {}
        grace = None
        if ctx.iface.enroll_grace is not None and grace_eligible(status) and not ctx.query.get("reauth"):
            grace = await self.service.rollout.grace_left(ctx.iface.name, ctx.identity.user_id)
        return self.kit.render(
            ctx,
            "enroll.html",
            code,
            status=status,
            pending=status.pending_masked_phone,
            notice=self._sent_to(ctx, status.pending_masked_phone)
            if sent and status.pending_masked_phone
            else "",
            error=error or ctx.lang.gettext(PASSKEY_FAILED.get(ctx.query.get("failed", ""), "")),
            send_error=send_error,
            sms_allowed="sms" in ctx.iface.factors,
            totp_allowed="totp" in ctx.iface.factors,
            webauthn_allowed="webauthn" in ctx.iface.factors,
            origins=ctx.iface.origins,
            grace=grace_text(grace, ctx.lang),
            **phone_fields(form),
            **waits,
        )


def ways_in(status: EnrollmentStatus, allowed: tuple[str, ...]) -> list[str]:
    """The ways the user can pass the challenge, preferred first: the app, the phone, then the
    recovery codes while one is left."""
    ways = list(status.usable if status.usable is not None else ["sms"])
    if "recovery" in allowed and "recovery" in status.factors:
        ways.append("recovery")
    return ways


def grace_text(grace: Grace | None, lang: Language) -> str:
    """What the enrollment page says of the grace left, in the reader's language ("" for none)."""
    if grace is None:
        return ""
    if grace.logins is not None:
        if grace.logins == 1:
            return lang.gettext("You can skip this once more; after that, signing in needs it.")
        return lang.ngettext(
            "You can skip this %(num)s more time; after that, signing in needs it.",
            "You can skip this %(num)s more times; after that, signing in needs it.",
            grace.logins,
        )
    assert grace.seconds is not None
    days = int(grace.seconds // 86400)
    if days >= 2:
        return lang.ngettext(
            "You can skip this for %(num)s more day; after that, signing in needs it.",
            "You can skip this for %(num)s more days; after that, signing in needs it.",
            days,
        )
    return lang.gettext(
        "You can skip this for %(wait)s more; after that, signing in needs it.",
        wait=lang.duration(grace.seconds),
    )
