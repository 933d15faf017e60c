"""Account pages past the challenge: a user changing their own phone, and the administrators'
management page. Both need a valid proof; the phone change also needs it to be fresh, and the
management page a user id or role from the interface's ``manage`` allow-list. A manager sees and
acts on the users of the interfaces in ``manage.interfaces`` only; acting on oneself needs a fresh
proof too, and a phone a manager sets is pending until its owner confirms it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import RedirectResponse, Response

from .errors import EnrollmentNotAllowed, InvalidInput, InvalidPhoneNumber, UnknownInterface
from .providers.base import Purpose
from .service import RequestInfo, SendStatus, VerifyStatus

if TYPE_CHECKING:
    from .pages import PageContext, Pages

log = logging.getLogger("tfa_middleware.pages")
MANAGE_ACTIONS = ("set_phone", "require_enrollment", "reset", "unlock")


# ---------------------------------------------------------------------------- the user's own phone


def _fresh(pages: Pages, ctx: PageContext) -> bool:
    proof = ctx.proof
    return proof is not None and pages.clock() - proof.issued_at <= ctx.iface.phone_change_fresh_seconds


def _reauthenticate(ctx: PageContext, page: str = "phone") -> Response:
    """Ask the current number first; the challenge sends the user back to ``page`` afterwards."""
    back = f"{ctx.iface.pages_path}/{page}"
    return RedirectResponse(f"{ctx.base}/challenge?reauth=1&next={back}", status_code=303)


async def phone_page(pages: Pages, ctx: PageContext) -> Response:
    if ctx.proof is None or not _fresh(pages, ctx):
        return _reauthenticate(ctx)
    status = await pages.service.status(ctx.iface.name, ctx.identity.user_id)
    if status.state != "active":
        return RedirectResponse(ctx.url("enroll"), status_code=303)
    done = f"Done: codes now go to {status.masked_phone}." if ctx.query.get("done") else ""
    return await _render_phone(pages, ctx, notice=done)


async def _render_phone(
    pages: Pages,
    ctx: PageContext,
    *,
    error: str = "",
    send_error: str = "",
    notice: str = "",
    code: int = 200,
    form: Mapping[str, str] | None = None,
) -> Response:
    status = await pages.service.status(ctx.iface.name, ctx.identity.user_id)
    waits = await pages.waits(ctx) if status.pending_masked_phone else {}
    return pages.render(
        ctx,
        "phone.html",
        code,
        status=status,
        error=error,
        send_error=send_error,
        notice=notice,
        country_code=(form or {}).get("country_code", ""),
        phone=(form or {}).get("phone", ""),
        **waits,
    )


async def phone_post(pages: Pages, ctx: PageContext, form: Mapping[str, str]) -> Response:
    """One form, four steps: start (a new number), send (again), verify (its code), cancel."""
    if ctx.proof is None or not _fresh(pages, ctx):
        return _reauthenticate(ctx)
    name, user_id, request = ctx.iface.name, ctx.identity.user_id, ctx.request
    action = form.get("action", "")
    if action == "start":
        try:
            await pages.service.change_phone(
                name, user_id, form.get("country_code", ""), form.get("phone", ""), request=request
            )
        except InvalidPhoneNumber as exc:
            return await _render_phone(pages, ctx, error=str(exc), code=400, form=form)
        except EnrollmentNotAllowed:
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        action = "send"
    if action == "send":
        outcome = await pages.service.send_code(name, user_id, purpose=Purpose.ENROLL, request=request)
        if outcome.status is SendStatus.REFUSED:
            message, code = pages.send_refusal(outcome)
            return await _render_phone(pages, ctx, send_error=message, code=code)
        if outcome.status is SendStatus.NEEDS_ENROLLMENT:
            return await _render_phone(pages, ctx, error="Enter the new number first.", code=400)
        return await _render_phone(pages, ctx, notice=f"We sent a code to {outcome.masked_phone}.")
    if action == "verify":
        verified = await pages.service.verify_code(
            name, user_id, form.get("code", ""), purpose=Purpose.ENROLL, request=request
        )
        if verified.status is VerifyStatus.APPROVED:
            # The change revoked every proof issued before it, this browser's too: issue a new one.
            response = RedirectResponse(ctx.url("phone", done="1"), status_code=303)
            pages.set_proof(
                response,
                ctx,
                pages.codecs[name].issue(
                    user_id, verified.generation, pages.clock(), verified.method, ctx.identity.session_id
                ),
            )
            return response
        return await _render_phone(pages, ctx, error=pages.verify_error(verified), code=400)
    if action == "cancel":
        await pages.service.cancel_phone_change(name, user_id, request=request)
        return RedirectResponse(ctx.url("phone"), status_code=303)
    raise InvalidInput("Unknown action.")


# ---------------------------------------------------------------------------- the management page


def may_manage(ctx: PageContext) -> bool:
    iface, identity = ctx.iface, ctx.identity
    return identity.user_id in iface.manage_user_ids or bool(identity.roles & set(iface.manage_roles))


def managed_interfaces(ctx: PageContext) -> tuple[str, ...]:
    """The interfaces whose users this page's managers may see and act on: ``manage.interfaces``."""
    return ctx.iface.manage_interfaces or (ctx.iface.name,)


def _refused(pages: Pages, ctx: PageContext) -> Response:
    return pages.message(ctx, 403, "Not allowed", "This page is only for the shop's administrators.")


async def manage_page(
    pages: Pages, ctx: PageContext, *, notice: str = "", error: str = "", code: int = 200
) -> Response:
    if ctx.proof is None:
        return RedirectResponse(
            f"{ctx.base}/challenge?next={ctx.iface.pages_path}/manage", status_code=303
        )
    if not may_manage(ctx):
        return _refused(pages, ctx)
    search = ctx.query.get("q", "")[:100]
    users = await pages.service.users(managed_interfaces(ctx), search=search, limit=200)
    return pages.render(
        ctx,
        "manage.html",
        code,
        users=[_row(u) for u in users],
        interfaces=sorted(managed_interfaces(ctx)),
        search=search,
        notice=notice,
        error=error,
    )


def _row(status: Any) -> dict[str, Any]:
    def when(at: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at)) if at else "never"

    return {
        "interface": status.interface,
        "user_id": status.user_id,
        "state": "re-enrollment required" if status.require_enrollment else status.state,
        "phone": status.masked_phone or status.pending_masked_phone or "none",
        "last_verified": when(status.last_verified_at),
        "locked_until": when(status.locked_until) if status.locked_until else "",
    }


async def manage_post(pages: Pages, ctx: PageContext, form: Mapping[str, str]) -> Response:
    if ctx.proof is None:
        return RedirectResponse(f"{ctx.base}/challenge", status_code=303)
    if not may_manage(ctx):
        return _refused(pages, ctx)
    action, interface, user_id = form.get("action", ""), form.get("interface", ""), form.get("user_id", "")
    if action not in MANAGE_ACTIONS:
        raise InvalidInput("Unknown action.")
    actor = f"{ctx.iface.name}/{ctx.identity.user_id}"
    request = RequestInfo(ctx.request.ip, ctx.request.user_agent, actor=actor)
    if interface not in managed_interfaces(ctx):
        # Checked on every action, not only when listing: the form's fields are the caller's.
        target = f"{interface[:40]}/{user_id[:100]}"
        # %r: the target is typed by the caller, and a line break must not forge a log line.
        log.warning("manage: %s refused %s on %r: not in manage.interfaces", actor, action, target)
        await pages.service.record(
            ctx.iface.name,
            ctx.identity.user_id,
            "manage_refused",
            request=request,
            action=action,
            target=target,
        )
        return pages.message(ctx, 403, "Not allowed", "You can't manage the users of that part of the shop.")
    # The shop's user ids may be shared between interfaces, so the same id anywhere counts as
    # oneself: acting on one's own second factor needs it fresh, as on the phone page.
    if user_id == ctx.identity.user_id and not _fresh(pages, ctx):
        return _reauthenticate(ctx, "manage")
    service = pages.service
    try:
        if action == "set_phone":
            # Pending until the user confirms it by a code; every proof of theirs is revoked.
            await service.assign_phone(
                interface, user_id, form.get("country_code", ""), form.get("phone", ""), request=request
            )
            done = f"The phone of {user_id} is set: they confirm it with a code at their next sign-in."
        elif action == "require_enrollment":
            await service.require_enrollment(interface, user_id, request=request)
            done = f"{user_id} will set up their phone again at the next sign-in."
        elif action == "reset":
            await service.reset(interface, user_id, request=request)
            done = f"The second factor of {user_id} is reset."
        else:
            unlocked = await service.unlock(interface, user_id, request=request)
            done = f"{user_id} is unlocked." if unlocked else f"{user_id} has no second factor to unlock."
    except (InvalidPhoneNumber, UnknownInterface, InvalidInput) as exc:
        return await manage_page(pages, ctx, error=str(exc), code=400)
    return await manage_page(pages, ctx, notice=done)
