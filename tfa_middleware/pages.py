"""The challenge pages under each interface's ``pages_path``: challenge, send, verify, enroll, logout.

GET never changes anything and never sends a text message (a GET must not cost money); every POST
needs the CSRF token and a same-site browser. ``next`` is only ever a path inside the interface.
Broken parts (database, provider) give a clear 503 page; nothing here ever shows a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import jinja2
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from . import manage
from .asgi import canonical_path, client_ip, header, inside, is_https
from .csrf import CsrfTokens, cross_site
from .errors import (
    EnrollmentNotAllowed,
    FormTooLarge,
    HostilePath,
    InvalidInput,
    InvalidPhoneNumber,
    ProviderBlocked,
    ProviderError,
    ProviderRateLimited,
    StoreUnavailable,
)
from .forms import read_form
from .identity import Identity
from .limits import Refusal
from .proof import Proof, ProofCodec
from .service import (
    EnrollmentStatus,
    RequestInfo,
    SendOutcome,
    SendStatus,
    TwoFactor,
    VerifyOutcome,
    VerifyStatus,
)
from .settings import InterfaceSettings, Settings

log = logging.getLogger("tfa_middleware.pages")

STATIC_DIR = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
WRONG_CODE = (
    "That code didn't work. It may be mistyped, used already or expired: "
    "check the latest text message or ask for a new code."
)
LOCKED = (
    "Too many wrong codes. For your security, no code can be checked for this account "
    "for {wait}. If this wasn't you, tell the shop's administrator."
)
SEND_REFUSALS = {
    Refusal.COOLDOWN: ("You can ask for a new code in {wait}.", 429),
    Refusal.ACCOUNT_LIMIT: ("You have asked for several codes already. You can ask again in {wait}.", 429),
    Refusal.PHONE_LIMIT: ("Too many codes went to this number recently. You can ask again in {wait}.", 429),
    Refusal.IP_LIMIT: ("Too many codes were asked for from your network. You can ask again in {wait}.", 429),
    Refusal.BUDGET: (
        "We can't send codes right now. Please try again later; "
        "if it keeps happening, tell the shop's administrator.",
        503,
    ),
    Refusal.COUNTRY: (
        "We can't send text messages to this number's country. Ask the shop's administrator for help.",
        400,
    ),
}
SEND_UNAVAILABLE = (
    "We couldn't send a code right now. Nobody can sign in without it, so please try again "
    "in a minute. If this keeps happening, tell the shop's administrator."
)
RATE_LIMITED = (
    "The text message service is busy. Nobody can sign in without a code, so please try again in {wait}."
)
BLOCKED = (
    "Our text message service refuses to send codes to this number. Ask the shop's "
    "administrator to set another number for you."
)
UNAVAILABLE = (
    "We can't check your code right now. Nobody can sign in without it, so please try again "
    "in a minute. If this keeps happening, tell the shop's administrator."
)


def _duration(seconds: float) -> str:
    """A wait as a person reads it: "25 seconds", "14 minutes", "2 hours"."""
    whole = max(1, int(seconds + 0.999))
    if whole < 90:
        return f"{whole} second{'s' if whole != 1 else ''}"
    if whole < 90 * 60:
        return f"{(whole + 59) // 60} minutes"
    hours = (whole + 3599) // 3600
    return f"{hours} hours"


# Our own pages that a user may be sent back to after a challenge: they only show things.
RETURN_PAGES = ("phone", "manage")


def safe_next(value: str | None, iface: InterfaceSettings) -> str:
    """``value`` when it is a same-origin path inside the interface (not our pages, except the
    ones in RETURN_PAGES), else the prefix."""
    fallback = iface.path_prefix
    if not value or len(value) > 2048:
        return fallback
    decoded = unquote(value)
    for text in (value, decoded):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or "\\" in text:
            return fallback
        if not text.startswith("/") or text.startswith("//"):
            return fallback
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return fallback
    try:
        path = canonical_path(parts.path)
    except HostilePath:
        return fallback
    if not inside(path, iface.path_prefix):
        return fallback
    if inside(path, iface.pages_path) and path not in {f"{iface.pages_path}/{p}" for p in RETURN_PAGES}:
        return fallback
    return value


@dataclass(frozen=True, slots=True)
class PageContext:
    """One request to our pages: who, where, and the parsed query."""

    iface: InterfaceSettings
    identity: Identity
    proof: Proof | None
    query: Mapping[str, str]
    request: RequestInfo
    https: bool
    root: str = ""  # the application's root path: every link and redirect starts with it

    @property
    def next(self) -> str:
        """Where to go after the challenge, relative to the application's root (as in the query)."""
        return safe_next(self.query.get("next"), self.iface)

    @property
    def next_url(self) -> str:
        return self.root + self.next

    @property
    def base(self) -> str:
        """The pages' own path as the browser sees it."""
        return self.root + self.iface.pages_path

    def url(self, page: str, **params: str) -> str:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {**params, "next": self.next}.items())
        return f"{self.base}/{page}?{query}"


class Pages:
    def __init__(
        self,
        settings: Settings,
        service: TwoFactor,
        codecs: Mapping[str, ProofCodec],
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.service = service
        self.codecs = codecs
        self.clock = clock
        self.csrf = {name: CsrfTokens(name, settings.secret_keys, clock) for name in settings.interfaces}
        built_in = jinja2.PackageLoader("tfa_middleware", "templates")
        # "tfa_middleware/base.html" is always the built-in file, so that an override of base.html
        # can extend it and change one block instead of copying the whole frame.
        loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"tfa_middleware": built_in}), built_in]
        if settings.templates_dir:
            loaders.insert(0, jinja2.FileSystemLoader(settings.templates_dir))
        self.templates = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders), autoescape=True, enable_async=False
        )
        self._static = {
            "static/tfa.css": ((STATIC_DIR / "tfa.css").read_bytes(), "text/css"),
            "static/tfa.js": ((STATIC_DIR / "tfa.js").read_bytes(), "text/javascript"),
        }
        branding = settings.branding
        if branding.primary_color:  # validated as #rrggbb: safe to write into CSS
            css = f":root{{--accent:{branding.primary_color}}}\n"
            self._static["static/brand.css"] = (css.encode(), "text/css")
        self.security_headers = dict(SECURITY_HEADERS)
        if branding.logo_origin:
            csp = SECURITY_HEADERS["Content-Security-Policy"]
            self.security_headers["Content-Security-Policy"] = csp.replace(
                "img-src 'self' data:", f"img-src 'self' data: {branding.logo_origin}"
            )

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        iface: InterfaceSettings,
        identity: Identity | None,
        proof: Proof | None,
        *,
        path: str,
        root: str = "",
    ) -> None:
        """``path`` is the request's canonical path relative to ``root``, the application's root."""
        page = path[len(iface.pages_path) :].strip("/")
        method = scope["method"]
        if page in self._static and method in ("GET", "HEAD"):
            body, media_type = self._static[page]
            response: Response = Response(
                body,
                media_type=media_type,
                headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
            )
            await response(scope, receive, send)
            return
        if identity is None:
            # Not logged in to the shop: its own login lives at the interface's prefix.
            response = RedirectResponse(root + iface.path_prefix, status_code=303)
        else:
            ctx = PageContext(
                iface=iface,
                identity=identity,
                proof=proof,
                query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
                request=RequestInfo(
                    ip=client_ip(scope, self.settings.trusted_proxies),
                    user_agent=header(scope, b"user-agent"),
                ),
                https=is_https(scope),
                root=root,
            )
            response = await self._dispatch(scope, receive, ctx, page, method)
        response.headers.update(self.security_headers)
        await response(scope, receive, send)

    async def _dispatch(
        self, scope: Scope, receive: Receive, ctx: PageContext, page: str, method: str
    ) -> Response:
        get_pages: dict[str, Callable[[PageContext], Awaitable[Response]]] = {
            "challenge": self.challenge,
            "enroll": self.enroll_page,
            "logout": self.logout_page,
            "phone": partial(manage.phone_page, self),
            "manage": partial(manage.manage_page, self),
        }
        post_pages: dict[str, Callable[[PageContext, Mapping[str, str]], Awaitable[Response]]] = {
            "send": self.send,
            "verify": self.verify,
            "enroll": self.enroll,
            "logout": self.logout,
            "phone": partial(manage.phone_post, self),
            "manage": partial(manage.manage_post, self),
        }
        try:
            if method in ("GET", "HEAD") and page in get_pages:
                return await get_pages[page](ctx)
            if method == "POST" and page in post_pages:
                refused = self._refuse_post(scope, ctx)
                if refused is not None:
                    return refused
                form = await read_form(scope, receive, self.settings.max_form_bytes)
                if not self.csrf[ctx.iface.name].valid(
                    form.get("csrf_token"), ctx.identity.user_id, ctx.identity.session_id
                ):
                    return self.message(
                        ctx, 403, "This form has expired", "Go back, reload the page and try again."
                    )
                return await post_pages[page](ctx, form)
            if page in get_pages or page in post_pages:
                return PlainTextResponse("Method not allowed", status_code=405)
            return self.message(ctx, 404, "Page not found", "There is nothing here.")
        except FormTooLarge as exc:
            return self.message(ctx, 413, "That was too much", str(exc))
        except InvalidInput as exc:
            return self.message(ctx, 400, "That didn't work", str(exc))
        except ProviderBlocked as exc:
            log.error("provider refuses %s user %s's number: %s", ctx.iface.name, ctx.identity.user_id, exc)
            return self.message(ctx, 400, "We can't text this number", BLOCKED)
        except ProviderRateLimited as exc:
            log.error("provider rate limit on %s for %s: %s", page, ctx.iface.name, exc)
            wait = _duration(exc.retry_after_seconds) if exc.retry_after_seconds else "a minute"
            return self.message(ctx, 503, "Temporarily unavailable", RATE_LIMITED.format(wait=wait))
        except (StoreUnavailable, ProviderError) as exc:
            log.error("fail closed on %s for %s user %s: %s", page, ctx.iface.name, ctx.identity.user_id, exc)
            text = SEND_UNAVAILABLE if page in ("send", "enroll") else UNAVAILABLE
            return self.message(ctx, 503, "Temporarily unavailable", text)
        except Exception:
            log.exception("unexpected error on %s page", page)
            return self.message(ctx, 500, "Something went wrong", UNAVAILABLE)

    def _refuse_post(self, scope: Scope, ctx: PageContext) -> Response | None:
        if cross_site(scope):
            return self.message(ctx, 403, "Request refused", "This form can only be sent from this site.")
        return None

    # ------------------------------------------------------------------ GET pages

    async def challenge(self, ctx: PageContext) -> Response:
        if ctx.proof is not None and not ctx.query.get("reauth"):
            return RedirectResponse(ctx.next_url, status_code=303)
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if status.needs_enrollment:
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        return await self._challenge(ctx, status)

    async def _challenge(
        self,
        ctx: PageContext,
        status: EnrollmentStatus,
        *,
        error: str = "",
        send_error: str = "",
        code: int = 200,
    ) -> Response:
        sent = bool(ctx.query.get("sent"))
        waits = await self.waits(ctx)
        return self.render(
            ctx,
            "challenge.html",
            code,
            masked_phone=status.masked_phone,
            notice=f"We sent a code to {status.masked_phone}." if sent else "",
            # After a wrong try, or a resend refused, the user has a code: lead with the form.
            sent=sent or bool(error) or bool(send_error),
            send_error=send_error,
            error=error,
            supports_call=self.service.provider.supports_call,
            **waits,
        )

    async def enroll_page(self, ctx: PageContext) -> Response:
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if not status.needs_enrollment:
            return RedirectResponse(ctx.url("challenge"), status_code=303)
        return await self._enroll(ctx, status)

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
        waits = await self.waits(ctx) if status.pending_masked_phone else {}
        return self.render(
            ctx,
            "enroll.html",
            code,
            status=status,
            pending=status.pending_masked_phone,
            notice=f"We sent a code to {status.pending_masked_phone}."
            if sent and status.pending_masked_phone
            else "",
            error=error,
            send_error=send_error,
            country_code=(form or {}).get("country_code", ""),
            phone=(form or {}).get("phone", ""),
            **waits,
        )

    # ------------------------------------------------------------------ POST pages

    async def send(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        channel = form.get("channel", "sms")
        outcome = await self.service.send_code(
            ctx.iface.name, ctx.identity.user_id, channel=channel, request=ctx.request
        )
        if outcome.status is SendStatus.NEEDS_ENROLLMENT:
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id)
        if outcome.status is SendStatus.REFUSED:
            error, code = self.send_refusal(outcome)
            if status.needs_enrollment:
                return await self._enroll(ctx, status, send_error=error, code=code)
            return await self._challenge(ctx, status, send_error=error, code=code)
        page = "enroll" if status.needs_enrollment else "challenge"
        return RedirectResponse(ctx.url(page, sent="1"), status_code=303)

    async def verify(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        name, user_id = ctx.iface.name, ctx.identity.user_id
        outcome = await self.service.verify_code(name, user_id, form.get("code", ""), request=ctx.request)
        if outcome.status is VerifyStatus.APPROVED:
            value = self.codecs[name].issue(
                user_id, outcome.generation, self.clock(), outcome.method, ctx.identity.session_id
            )
            response = RedirectResponse(ctx.next_url, status_code=303)
            self.set_proof(response, ctx, value)
            return response
        if outcome.status is VerifyStatus.NEEDS_ENROLLMENT:
            return RedirectResponse(ctx.url("enroll"), status_code=303)
        error = self.verify_error(outcome)
        status = await self.service.status(name, user_id)  # only now: the page to show it on
        # One status for every refusal of a code: wrong, expired, used, waiting or locked (no oracle).
        if status.needs_enrollment:
            return await self._enroll(ctx, status, error=error, code=400)
        return await self._challenge(ctx, status, error=error, code=400)

    async def enroll(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        name, user_id = ctx.iface.name, ctx.identity.user_id
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
                return await self._enroll(ctx, status, error=str(exc), code=400)
            return RedirectResponse(ctx.url("challenge"), status_code=303)
        except InvalidPhoneNumber as exc:
            status = await self.service.status(name, user_id)
            return await self._enroll(ctx, status, error=str(exc), code=400, form=form)
        # The user just asked, by POST, to set up this number: sending its code now saves a click.
        outcome = await self.service.send_code(name, user_id, request=ctx.request)
        if outcome.status is SendStatus.REFUSED:
            # The number is stored, but no code went to it (a cooldown after the previous
            # number's, say): the page must not claim one did.
            message, code = self.send_refusal(outcome)
            status = await self.service.status(name, user_id)
            unsent = f"No code was sent to {outcome.masked_phone} yet. {message}"
            return await self._enroll(ctx, status, send_error=unsent, code=code)
        return RedirectResponse(ctx.url("enroll", sent="1"), status_code=303)

    async def logout_page(self, ctx: PageContext) -> Response:
        return self.render(ctx, "logout.html", 200)

    async def logout(self, ctx: PageContext, form: Mapping[str, str]) -> Response:
        await self.service.sign_out(ctx.iface.name, ctx.identity.user_id, request=ctx.request)
        response = RedirectResponse(ctx.url("challenge"), status_code=303)
        response.delete_cookie(
            self.cookie_name(ctx.iface, ctx.https), path="/", secure=ctx.https, httponly=True, samesite="lax"
        )
        return response

    # ------------------------------------------------------------------ helpers

    def send_refusal(self, outcome: SendOutcome) -> tuple[str, int]:
        """The message and status for a send that a limit refused."""
        assert outcome.refusal is not None
        message, code = SEND_REFUSALS[outcome.refusal]
        return message.format(wait=_duration(outcome.retry_after)), code

    def verify_error(self, outcome: VerifyOutcome) -> str:
        """The message for a code that did not let the user in."""
        low, high = self.service.code_lengths
        digits = f"{low}" if low == high else f"{low} to {high}"
        wait = _duration(outcome.retry_at - self.clock())
        return {
            VerifyStatus.MALFORMED: f"Enter the {digits}-digit code from the text message, digits only.",
            VerifyStatus.WAIT: f"Please wait {wait} before trying again.",
            VerifyStatus.LOCKED: LOCKED.format(wait=wait),
        }.get(outcome.status, WRONG_CODE)

    async def waits(self, ctx: PageContext) -> dict[str, Any]:
        """What the page must say the user is waiting for: a lock, and the resend cooldown."""
        waits = await self.service.waits(ctx.iface.name, ctx.identity.user_id)
        now = self.clock()
        send_wait = max(0, int(waits.next_send_at - now + 0.999)) if waits.next_send_at else 0
        locked = LOCKED.format(wait=_duration(waits.locked_until - now)) if waits.locked_until else ""
        return {"send_wait": send_wait, "locked": locked}

    @staticmethod
    def cookie_name(iface: InterfaceSettings, https: bool) -> str:
        return f"__Host-{iface.proof_cookie}" if https else iface.proof_cookie

    def set_proof(self, response: Response, ctx: PageContext, value: str) -> None:
        response.set_cookie(
            self.cookie_name(ctx.iface, ctx.https),
            value,
            max_age=ctx.iface.proof_max_age_seconds,
            path="/",
            secure=ctx.https,
            httponly=True,
            samesite="lax",
        )

    def render(self, ctx: PageContext, template: str, status_code: int, **values: Any) -> Response:
        html = self.templates.get_template(template).render(
            pages_path=ctx.base,
            interface=ctx.iface.name,
            next=ctx.next_url,
            **self._way_out(ctx),
            url=ctx.url,
            csrf_token=self.csrf[ctx.iface.name].issue(ctx.identity.user_id, ctx.identity.session_id),
            code_length=self.service.code_lengths[1],
            code_min_length=self.service.code_lengths[0],
            branding=self.settings.branding,
            **values,
        )
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")

    @staticmethod
    def _way_out(ctx: PageContext) -> dict[str, str]:
        """Links out of the pages: the shop's own logout ("Not you?") and the shop's front page."""
        logout = ctx.iface.logout_url
        return {"logout_url": ctx.root + logout if logout else "", "shop_url": ctx.root + "/"}

    def message(self, ctx: PageContext, status_code: int, title: str, text: str) -> Response:
        html = self.templates.get_template("message.html").render(
            pages_path=ctx.base,
            title=title,
            text=text,
            back=ctx.next_url,
            **self._way_out(ctx),
            branding=self.settings.branding,
        )
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")
