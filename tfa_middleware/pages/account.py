"""Account pages past the challenge: a user changing their own phone, and the administrators'
management page. Both need a valid proof; the phone change also needs it to be fresh, and the
management page a user id or role from the interface's ``manage`` allow-list. A manager sees and
acts on the users of the interfaces in ``manage.interfaces`` only; acting on oneself needs a fresh
proof too, and a phone a manager sets is pending until its owner confirms it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import RedirectResponse, Response

from ..errors import EnrollmentNotAllowed, InvalidInput, InvalidPhoneNumber, UnknownInterface
from ..i18n import N_, Language
from ..service import (
    MAX_EXEMPTION_DAYS,
    EnrollmentStatus,
    Factor,
    Purpose,
    RequestInfo,
    SendStatus,
    VerifyStatus,
    parse_until,
)
from .kit import PageContext, PageKit, browser_row, codes_page, phone_fields
from .traffic import chart

log = logging.getLogger("tfa_middleware.pages")
MANAGE_ACTIONS = (
    "set_phone",
    "require_enrollment",
    "reset",
    "unlock",
    "remove_factor",
    "forget_browser",
    "recovery_codes",
    "exempt",
    "end_exemption",
)


def _reauthenticate(ctx: PageContext, page: str = "phone") -> Response:
    """Ask the current number first; the challenge sends the user back to ``page`` afterwards."""
    back = f"{ctx.iface.pages_path}/{page}"
    return RedirectResponse(f"{ctx.base}/challenge?reauth=1&next={back}", status_code=303)


def may_manage(ctx: PageContext) -> bool:
    iface, identity = ctx.iface, ctx.identity
    return identity.user_id in iface.manage_user_ids or bool(identity.roles & set(iface.manage_roles))


def managed_interfaces(ctx: PageContext) -> tuple[str, ...]:
    """The interfaces whose users this page's managers may see and act on: ``manage.interfaces``."""
    return ctx.iface.manage_interfaces or (ctx.iface.name,)


# A factor on the manage page: its kind alone, or its kind and its name (whole texts, each).
FACTOR_KINDS = {"sms": N_("Phone"), "totp": N_("Authenticator app"), "webauthn": N_("Passkey")}
FACTOR_LABELLED = {
    "sms": N_("Phone: %(label)s"),
    "totp": N_("Authenticator app: %(label)s"),
    "webauthn": N_("Passkey: %(label)s"),
}
STATES = {
    "none": N_("no phone"),
    "pending": N_("waiting for confirmation"),
    "active": N_("active"),
    "reenroll": N_("re-enrollment required"),
}


def _factor_row(factor: Factor, lang: Language) -> dict[str, Any]:
    if factor.kind not in FACTOR_KINDS:
        what = f"{factor.kind}: {factor.label}" if factor.label else factor.kind
    elif factor.label:
        what = lang.gettext(FACTOR_LABELLED[factor.kind], label=factor.label)
    else:
        what = lang.gettext(FACTOR_KINDS[factor.kind])
    return {
        "id": factor.id,
        "what": what,
        "confirmed": factor.confirmed,
        "added": lang.when(factor.created_at),
        "used": lang.when(factor.last_used_at),
    }


def _row(status: EnrollmentStatus, lang: Language) -> dict[str, Any]:
    return {
        "interface": status.interface,
        "user_id": status.user_id,
        "state": lang.gettext(STATES["reenroll" if status.require_enrollment else status.state]),
        "phone": status.masked_phone or status.pending_masked_phone or lang.gettext("none"),
        "last_verified": lang.when(status.last_verified_at),
        "locked_until": lang.when(status.locked_until) if status.locked_until else "",
    }


class AccountPages:
    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.service = kit.service

    # ------------------------------------------------------------------ the user's own phone

    async def phone_page(self, ctx: PageContext) -> Response:
        if ctx.proof is None or not self.kit.fresh(ctx):
            return _reauthenticate(ctx)
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if status.state != "active":
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        phone = ctx.lang.ltr(status.masked_phone or "")
        done = ctx.lang.html("Done: codes now go to %(phone)s.", phone=phone) if ctx.query.get("done") else ""
        return await self._phone(ctx, notice=done)

    async def phone_post(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        """One form, four steps: start (a new number), send (again), verify (its code), cancel."""
        if ctx.proof is None or not self.kit.fresh(ctx):
            return _reauthenticate(ctx)
        action = form.get("action", "")
        if action == "start":
            try:
                await self.service.change_phone(
                    ctx.iface.name,
                    ctx.identity.user_id,
                    form.get("country_code", ""),
                    form.get("phone", ""),
                    request=ctx.request,
                )
            except InvalidPhoneNumber as exc:
                return await self._phone(ctx, error=self.kit.explain(ctx, exc), code=400, form=form)
            except EnrollmentNotAllowed:
                return RedirectResponse(ctx.url("enroll"), status_code=303)
            action = "send"
        if action == "send":
            return await self._send_to_new_phone(ctx)
        if action == "verify":
            return await self._verify_new_phone(ctx, form.get("code", ""))
        if action == "cancel":
            await self.service.cancel_phone_change(ctx.iface.name, ctx.identity.user_id, request=ctx.request)
            return RedirectResponse(ctx.url("phone"), status_code=303)
        raise InvalidInput(N_("Unknown action."))

    async def _send_to_new_phone(self, ctx: PageContext) -> Response:
        outcome = await self.service.send_code(
            ctx.iface.name,
            ctx.identity.user_id,
            purpose=Purpose.ENROLL,
            request=ctx.request,
            locale=ctx.lang.code,
        )
        lang = ctx.lang
        if outcome.status is SendStatus.REFUSED:
            message, code = self.kit.send_refusal(outcome, lang)
            return await self._phone(ctx, send_error=message, code=code)
        if outcome.status is SendStatus.NEEDS_ENROLLMENT:
            return await self._phone(ctx, error=lang.gettext("Enter the new number first."), code=400)
        sent = lang.html("We sent a code to %(phone)s.", phone=lang.ltr(outcome.masked_phone or ""))
        return await self._phone(ctx, notice=sent)

    async def _verify_new_phone(self, ctx: PageContext, code: str) -> Response:
        verified = await self.service.verify_code(
            ctx.iface.name, ctx.identity.user_id, code, purpose=Purpose.ENROLL, request=ctx.request
        )
        if verified.status is VerifyStatus.APPROVED:
            # The change revoked every proof issued before it, this browser's too: issue a new one.
            response = RedirectResponse(ctx.url("phone", done="1"), status_code=303)
            await self.kit.set_proof(response, ctx, verified.generation, verified.method)
            return response
        return await self._phone(ctx, error=self.kit.verify_error(verified, ctx.lang), code=400)

    async def _phone(
        self,
        ctx: PageContext,
        *,
        error: str = "",
        send_error: str = "",
        notice: str = "",
        code: int = 200,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        waits = await self.kit.waits(ctx) if status.pending_masked_phone else {}
        return self.kit.render(
            ctx,
            "phone.html",
            code,
            status=status,
            error=error,
            send_error=send_error,
            notice=notice,
            **phone_fields(form),
            **waits,
        )

    # ------------------------------------------------------------------ the management page

    async def manage_page(
        self, ctx: PageContext, *, notice: str = "", error: str = "", code: int = 200
    ) -> Response:
        if ctx.proof is None:
            return RedirectResponse(
                f"{ctx.base}/challenge?next={ctx.iface.pages_path}/manage", status_code=303
            )
        if not may_manage(ctx):
            return self._refused(ctx)
        if "user" in ctx.query:
            return await self._one_user(ctx, notice=notice, error=error, code=code)
        search = ctx.query.get("q", "")[:100]
        users = await self.service.users(managed_interfaces(ctx), search=search, limit=200)
        # The sends, verifies, regions and lockouts of the managed interfaces (pages/traffic.py).
        operations = self.service.operations
        counts = await operations.traffic(managed_interfaces(ctx))
        traffic = chart(counts, await operations.budget(), ctx.lang)
        return self.kit.render(
            ctx,
            "manage.html",
            code,
            users=[_row(u, ctx.lang) for u in users],
            traffic=traffic,
            interfaces=sorted(managed_interfaces(ctx)),
            search=search,
            notice=notice,
            error=error,
        )

    async def manage_post(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        if ctx.proof is None:
            return RedirectResponse(f"{ctx.base}/challenge", status_code=303)
        if not may_manage(ctx):
            return self._refused(ctx)
        action, interface, user_id = (
            form.get("action", ""),
            form.get("interface", ""),
            form.get("user_id", ""),
        )
        if action not in MANAGE_ACTIONS:
            raise InvalidInput(N_("Unknown action."))
        actor = f"{ctx.iface.name}/{ctx.identity.user_id}"
        request = RequestInfo(ctx.request.ip, ctx.request.user_agent, actor=actor)
        if interface not in managed_interfaces(ctx):
            return await self._not_managed(ctx, action, f"{interface[:40]}/{user_id[:100]}", request)
        # The shop's user ids may be shared between interfaces, so the same id anywhere counts as
        # oneself: acting on one's own second factor needs it fresh, as on the phone page.
        if user_id == ctx.identity.user_id and not self.kit.fresh(ctx):
            return _reauthenticate(ctx, "manage")
        if action == "exempt" and user_id == ctx.identity.user_id:
            error = ctx.lang.gettext("Ask another manager to exempt you.")
            return await self.manage_page(ctx, error=error, code=400)
        if action == "exempt" and not self.kit.fresh(ctx):
            # It lowers somebody's protection: a code typed lately, as for changing one's own.
            return _reauthenticate(ctx, "manage")
        if action == "recovery_codes":  # shown once, to the manager, to hand over
            codes = await self.service.factors.issue_recovery_codes(interface, user_id, request=request)
            back = ctx.url("manage", interface=interface, user=user_id)
            return codes_page(self.kit, ctx, codes, back, for_user=f"{user_id} ({interface})")
        try:
            done = await self._act(action, interface, user_id, form, request, ctx.lang)
        except (InvalidPhoneNumber, UnknownInterface, InvalidInput) as exc:
            return await self.manage_page(ctx, error=self.kit.explain(ctx, exc), code=400)
        return await self.manage_page(ctx, notice=done)

    async def _one_user(
        self, ctx: PageContext, *, notice: str = "", error: str = "", code: int = 200
    ) -> Response:
        """One user's factors and remembered browsers, with their removal and recovery codes."""
        interface, user_id = ctx.query.get("interface", ""), ctx.query.get("user", "")
        if interface not in managed_interfaces(ctx):
            return self._not_yours(ctx)
        factors = await self.service.factors.of_user(interface, user_id)
        browsers = await self.service.factors.remembered_browsers(interface, user_id)
        exemption = await self.service.rollout.exemption(interface, user_id)
        return self.kit.render(
            ctx,
            "manage_user.html",
            code,
            target={"interface": interface, "user_id": user_id},
            factors=[_factor_row(f, ctx.lang) for f in factors if f.kind != "recovery"],
            recovery_left=sum(1 for f in factors if f.kind == "recovery" and f.last_used_at is None),
            recovery_id=next((f.id for f in factors if f.kind == "recovery"), None),
            browsers=[browser_row(b, ctx.lang) for b in browsers],
            browser_user={"interface": interface, "user_id": user_id},
            browser_page="manage",
            remember_days=1,
            exemption=exemption
            and {
                "until": ctx.lang.when(exemption.until),
                "reason": exemption.reason,
                "by": exemption.created_by,
                "since": ctx.lang.when(exemption.created_at),
            },
            max_exemption_days=MAX_EXEMPTION_DAYS,
            notice=notice,
            error=error,
        )

    async def _act(
        self,
        action: str,
        interface: str,
        user_id: str,
        form: Mapping[str, str],
        request: RequestInfo,
        lang: Language,
    ) -> str:
        """Do one of MANAGE_ACTIONS on a user of a managed interface; what the page says was done."""
        service, _ = self.service, lang.gettext
        if action == "set_phone":
            # Pending until the user confirms it by a code; every proof of theirs is revoked.
            await service.assign_phone(
                interface, user_id, form.get("country_code", ""), form.get("phone", ""), request=request
            )
            return _(
                "The phone of %(user)s is set: they confirm it with a code at their next sign-in.",
                user=user_id,
            )
        if action == "require_enrollment":
            await service.require_enrollment(interface, user_id, request=request)
            return _("%(user)s will set up their phone again at the next sign-in.", user=user_id)
        if action == "reset":
            await service.reset(interface, user_id, request=request)
            return _("The second factor of %(user)s is reset.", user=user_id)
        if action in ("remove_factor", "forget_browser"):
            item = form.get("factor_id" if action == "remove_factor" else "browser_id", "")
            if not item.isascii() or not item.isdigit() or len(item) > 18:
                raise InvalidInput(N_("Unknown item."))
            if action == "remove_factor":
                removed = await service.factors.remove(interface, user_id, int(item), request=request)
                if removed:
                    return _("Removed from %(user)s.", user=user_id)
                return _("%(user)s has no such factor.", user=user_id)
            forgotten = await service.factors.forget_browser(interface, user_id, int(item), request=request)
            if forgotten:
                return _("%(user)s's browser is forgotten.", user=user_id)
            return _("%(user)s has no such browser.", user=user_id)
        if action in ("exempt", "end_exemption"):
            return await self._exemption(action, interface, user_id, form, request, lang)
        if await service.unlock(interface, user_id, request=request):
            return _("%(user)s is unlocked.", user=user_id)
        return _("%(user)s has no second factor to unlock.", user=user_id)

    async def _exemption(
        self,
        action: str,
        interface: str,
        user_id: str,
        form: Mapping[str, str],
        request: RequestInfo,
        lang: Language,
    ) -> str:
        """Exempt the user until the form's date, or end their exemption; what the page says."""
        rollout, _ = self.service.rollout, lang.gettext
        if action == "exempt":
            until, reason = parse_until(form.get("until", "")), form.get("reason", "")
            exemption = await rollout.exempt(interface, user_id, until, reason, request=request)
            return _("%(user)s is exempt until %(until)s.", user=user_id, until=lang.when(exemption.until))
        if await rollout.end_exemption(interface, user_id, request=request):
            return _("The exemption of %(user)s is ended.", user=user_id)
        return _("%(user)s has no exemption.", user=user_id)

    async def _not_managed(
        self, ctx: PageContext, action: str, target: str, request: RequestInfo
    ) -> Response:
        """Checked on every action, not only when listing: the form's fields are the caller's."""
        actor = request.actor
        # %r: the target is typed by the caller, and a line break must not forge a log line.
        log.warning("manage: %s refused %s on %r: not in manage.interfaces", actor, action, target)
        await self.service.record(
            ctx.iface.name,
            ctx.identity.user_id,
            "manage_refused",
            request=request,
            action=action,
            target=target,
        )
        return self._not_yours(ctx)

    def _not_yours(self, ctx: PageContext) -> Response:
        _ = ctx.lang.gettext
        return self.kit.message(
            ctx, 403, _("Not allowed"), _("You can't manage the users of that part of the shop.")
        )

    def _refused(self, ctx: PageContext) -> Response:
        _ = ctx.lang.gettext
        return self.kit.message(
            ctx, 403, _("Not allowed"), _("This page is only for the shop's administrators.")
        )
