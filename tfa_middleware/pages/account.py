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
from .kit import PageContext, PageKit, browser_row, codes_page, phone_fields, when
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


def _factor_row(factor: Factor) -> dict[str, Any]:
    shown = {"sms": "Phone", "totp": "Authenticator app", "webauthn": "Passkey"}.get(factor.kind, factor.kind)
    return {
        "id": factor.id,
        "what": f"{shown}: {factor.label}" if factor.label else shown,
        "confirmed": factor.confirmed,
        "added": when(factor.created_at),
        "used": when(factor.last_used_at),
    }


def _row(status: EnrollmentStatus) -> dict[str, Any]:
    return {
        "interface": status.interface,
        "user_id": status.user_id,
        "state": "re-enrollment required" if status.require_enrollment else status.state,
        "phone": status.masked_phone or status.pending_masked_phone or "none",
        "last_verified": when(status.last_verified_at),
        "locked_until": when(status.locked_until) if status.locked_until else "",
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
        done = f"Done: codes now go to {status.masked_phone}." if ctx.query.get("done") else ""
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
                return await self._phone(ctx, error=str(exc), code=400, form=form)
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
        raise InvalidInput("Unknown action.")

    async def _send_to_new_phone(self, ctx: PageContext) -> Response:
        outcome = await self.service.send_code(
            ctx.iface.name, ctx.identity.user_id, purpose=Purpose.ENROLL, request=ctx.request
        )
        if outcome.status is SendStatus.REFUSED:
            message, code = self.kit.send_refusal(outcome)
            return await self._phone(ctx, send_error=message, code=code)
        if outcome.status is SendStatus.NEEDS_ENROLLMENT:
            return await self._phone(ctx, error="Enter the new number first.", code=400)
        return await self._phone(ctx, notice=f"We sent a code to {outcome.masked_phone}.")

    async def _verify_new_phone(self, ctx: PageContext, code: str) -> Response:
        verified = await self.service.verify_code(
            ctx.iface.name, ctx.identity.user_id, code, purpose=Purpose.ENROLL, request=ctx.request
        )
        if verified.status is VerifyStatus.APPROVED:
            # The change revoked every proof issued before it, this browser's too: issue a new one.
            response = RedirectResponse(ctx.url("phone", done="1"), status_code=303)
            await self.kit.set_proof(response, ctx, verified.generation, verified.method)
            return response
        return await self._phone(ctx, error=self.kit.verify_error(verified), code=400)

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
        traffic = chart(await operations.traffic(managed_interfaces(ctx)), await operations.budget())
        return self.kit.render(
            ctx,
            "manage.html",
            code,
            users=[_row(u) for u in users],
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
            raise InvalidInput("Unknown action.")
        actor = f"{ctx.iface.name}/{ctx.identity.user_id}"
        request = RequestInfo(ctx.request.ip, ctx.request.user_agent, actor=actor)
        if interface not in managed_interfaces(ctx):
            return await self._not_managed(ctx, action, f"{interface[:40]}/{user_id[:100]}", request)
        # The shop's user ids may be shared between interfaces, so the same id anywhere counts as
        # oneself: acting on one's own second factor needs it fresh, as on the phone page.
        if user_id == ctx.identity.user_id and not self.kit.fresh(ctx):
            return _reauthenticate(ctx, "manage")
        if action == "exempt" and user_id == ctx.identity.user_id:
            return await self.manage_page(ctx, error="Ask another manager to exempt you.", code=400)
        if action == "exempt" and not self.kit.fresh(ctx):
            # It lowers somebody's protection: a code typed lately, as for changing one's own.
            return _reauthenticate(ctx, "manage")
        if action == "recovery_codes":  # shown once, to the manager, to hand over
            codes = await self.service.factors.issue_recovery_codes(interface, user_id, request=request)
            back = ctx.url("manage", interface=interface, user=user_id)
            return codes_page(self.kit, ctx, codes, back, for_user=f"{user_id} ({interface})")
        try:
            done = await self._act(action, interface, user_id, form, request)
        except (InvalidPhoneNumber, UnknownInterface, InvalidInput) as exc:
            return await self.manage_page(ctx, error=str(exc), code=400)
        return await self.manage_page(ctx, notice=done)

    async def _one_user(
        self, ctx: PageContext, *, notice: str = "", error: str = "", code: int = 200
    ) -> Response:
        """One user's factors and remembered browsers, with their removal and recovery codes."""
        interface, user_id = ctx.query.get("interface", ""), ctx.query.get("user", "")
        if interface not in managed_interfaces(ctx):
            return self.kit.message(
                ctx, 403, "Not allowed", "You can't manage the users of that part of the shop."
            )
        factors = await self.service.factors.of_user(interface, user_id)
        browsers = await self.service.factors.remembered_browsers(interface, user_id)
        exemption = await self.service.rollout.exemption(interface, user_id)
        return self.kit.render(
            ctx,
            "manage_user.html",
            code,
            target={"interface": interface, "user_id": user_id},
            factors=[_factor_row(f) for f in factors if f.kind != "recovery"],
            recovery_left=sum(1 for f in factors if f.kind == "recovery" and f.last_used_at is None),
            recovery_id=next((f.id for f in factors if f.kind == "recovery"), None),
            browsers=[browser_row(b) for b in browsers],
            browser_user={"interface": interface, "user_id": user_id},
            browser_page="manage",
            remember_days=1,
            exemption=exemption
            and {
                "until": when(exemption.until),
                "reason": exemption.reason,
                "by": exemption.created_by,
                "since": when(exemption.created_at),
            },
            max_exemption_days=MAX_EXEMPTION_DAYS,
            notice=notice,
            error=error,
        )

    async def _act(
        self, action: str, interface: str, user_id: str, form: Mapping[str, str], request: RequestInfo
    ) -> str:
        """Do one of MANAGE_ACTIONS on a user of a managed interface; what the page says was done."""
        service = self.service
        if action == "set_phone":
            # Pending until the user confirms it by a code; every proof of theirs is revoked.
            await service.assign_phone(
                interface, user_id, form.get("country_code", ""), form.get("phone", ""), request=request
            )
            return f"The phone of {user_id} is set: they confirm it with a code at their next sign-in."
        if action == "require_enrollment":
            await service.require_enrollment(interface, user_id, request=request)
            return f"{user_id} will set up their phone again at the next sign-in."
        if action == "reset":
            await service.reset(interface, user_id, request=request)
            return f"The second factor of {user_id} is reset."
        if action in ("remove_factor", "forget_browser"):
            item = form.get("factor_id" if action == "remove_factor" else "browser_id", "")
            if not item.isascii() or not item.isdigit() or len(item) > 18:
                raise InvalidInput("Unknown item.")
            if action == "remove_factor":
                removed = await service.factors.remove(interface, user_id, int(item), request=request)
                return f"Removed from {user_id}." if removed else f"{user_id} has no such factor."
            forgotten = await service.factors.forget_browser(interface, user_id, int(item), request=request)
            return f"{user_id}'s browser is forgotten." if forgotten else f"{user_id} has no such browser."
        if action == "exempt":
            until = parse_until(form.get("until", ""))
            reason = form.get("reason", "")
            exemption = await service.rollout.exempt(interface, user_id, until, reason, request=request)
            return f"{user_id} is exempt until {when(exemption.until)}."
        if action == "end_exemption":
            ended = await service.rollout.end_exemption(interface, user_id, request=request)
            return f"The exemption of {user_id} is ended." if ended else f"{user_id} has no exemption."
        unlocked = await service.unlock(interface, user_id, request=request)
        return f"{user_id} is unlocked." if unlocked else f"{user_id} has no second factor to unlock."

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
        return self.kit.message(
            ctx, 403, "Not allowed", "You can't manage the users of that part of the shop."
        )

    def _refused(self, ctx: PageContext) -> Response:
        return self.kit.message(ctx, 403, "Not allowed", "This page is only for the shop's administrators.")
