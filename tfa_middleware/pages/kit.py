"""What every page needs: the request's context, the templates, the texts people read, the CSRF
check of a form and the proof cookie.

The page classes (``sign_in.py``, ``account.py``) hold the steps; they reach the service for the use
cases and this kit for everything about HTTP, so the two never need each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jinja2
from starlette.responses import Response
from starlette.types import Receive, Scope

from ..asgi import canonical_path, cookie, inside, is_https
from ..csrf import CsrfTokens, cross_site
from ..errors import HostilePath, InvalidInput, StoreUnavailable
from ..forms import read_form
from ..i18n import ENGLISH, N_, Language, Languages
from ..identity import Identity
from ..policy import EXEMPT as EXEMPT
from ..policy import GRACE as GRACE
from ..policy import NOT_TYPED
from ..policy import REMEMBERED as REMEMBERED
from ..proof import (
    Proof,
    ProofCodec,
    proof_clear_cookie,
    proof_cookie_name,
    proof_set_cookie,
    session_digest,
)
from ..service import (
    Refusal,
    RememberedBrowser,
    RequestInfo,
    SendOutcome,
    TwoFactor,
    VerifyOutcome,
    VerifyStatus,
)
from ..settings import InterfaceSettings, Settings

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
WRONG_CODE = N_(
    "That code didn't work. It may be mistyped, used already or expired: "
    "check the latest text message or ask for a new code."
)
WRONG_CODES = {
    "totp": N_(
        "That code didn't work. It may be mistyped or used already: enter the code your app shows "
        "now, and check that your phone's clock is right."
    ),
    "recovery": N_("That code didn't work. It may be mistyped or used already: try another of your codes."),
    "webauthn": N_("That passkey didn't work. Try again, or use another way."),
}
NEEDS_JAVASCRIPT = N_("Passkeys need JavaScript: turn it on in this browser, or use another way.")
# Why a passkey was not added (the ?failed= of the page it was added from).
PASSKEY_FAILED = {
    "javascript": NEEDS_JAVASCRIPT,
    "passkey": N_("That passkey wasn't added. Try again; if it keeps failing, use another way."),
    "locked": N_("Too many tries failed: wait a while before adding a passkey."),
}
MALFORMED = {
    "totp": N_("Enter the 6-digit code from your authenticator app, digits only."),
    "recovery": N_("A recovery code has 16 letters and digits, like ABCD-EFGH-JKLM-NPQR."),
    "webauthn": NEEDS_JAVASCRIPT,
}
MALFORMED_SMS = N_("Enter the %(digits)s-digit code from the text message, digits only.")
MALFORMED_SMS_RANGE = N_("Enter the code of %(low)s to %(high)s digits from the text message, digits only.")
LOCKED = N_(
    "Too many wrong codes. For your security, no code can be checked for this account "
    "for %(wait)s. If this wasn't you, tell the shop's administrator."
)
WAIT = N_("Please wait %(wait)s before trying again.")
SEND_REFUSALS = {
    Refusal.COOLDOWN: (N_("You can ask for a new code %(in_wait)s."), 429),
    Refusal.ACCOUNT_LIMIT: (
        N_("You have asked for several codes already. You can ask again %(in_wait)s."),
        429,
    ),
    Refusal.PHONE_LIMIT: (
        N_("Too many codes went to this number recently. You can ask again %(in_wait)s."),
        429,
    ),
    Refusal.IP_LIMIT: (
        N_("Too many codes were asked for from your network. You can ask again %(in_wait)s."),
        429,
    ),
    Refusal.BUDGET: (
        N_(
            "We can't send codes right now. Please try again later; "
            "if it keeps happening, tell the shop's administrator."
        ),
        503,
    ),
    Refusal.COUNTRY: (
        N_("We can't send text messages to this number's country. Ask the shop's administrator for help."),
        400,
    ),
}
SEND_UNAVAILABLE = N_(
    "We couldn't send a code right now. Nobody can sign in without it, so please try again "
    "in a minute. If this keeps happening, tell the shop's administrator."
)
RATE_LIMITED = N_(
    "The text message service is busy. Nobody can sign in without a code, so please try again %(in_wait)s."
)
RATE_LIMITED_MINUTE = N_(
    "The text message service is busy. Nobody can sign in without a code, so please try again in a minute."
)
BLOCKED = N_(
    "Our text message service refuses to send codes to this number. Ask the shop's "
    "administrator to set another number for you."
)
UNAVAILABLE = N_(
    "We can't check your code right now. Nobody can sign in without it, so please try again "
    "in a minute. If this keeps happening, tell the shop's administrator."
)
MAX_COUNTDOWN = 600  # a longer wait is written once, not counted down by the script
# The codes' text file: its first line, then the codes one a line.
CODES_FILE = N_("Recovery codes (each works once; any earlier codes no longer work):")


SETUP = ".setup"  # a set-up proof's interface is "<name>.setup": valid for the account pages alone
SETUP_COOKIE = "_setup"


def missing_factors(iface: InterfaceSettings, kinds: frozenset[str]) -> list[str]:
    """What require_factors asks for that the user has not set up (recovery: with a code left)."""
    return [kind for kind in iface.require_factors if kind not in kinds]


# Our own pages that a user may be sent back to after a challenge: they only show things.
RETURN_PAGES = ("phone", "manage", "account", "app")
# What require_factors still asks of a user on the account page: one whole sentence per factor.
FACTOR_NEEDED = {
    "webauthn": N_("This account needs a passkey: add one below to continue."),
    "totp": N_("This account needs an authenticator app: set one up below to continue."),
    "recovery": N_("This account needs recovery codes: get them below to continue."),
    "sms": N_("This account needs a phone: set one up below to continue."),
}


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


def remember_cookie_name(iface: InterfaceSettings, https: bool) -> str:
    """The remembered browser's cookie: the proof cookie's name and ``_remember``."""
    return proof_cookie_name(f"{iface.proof_cookie}_remember", https)


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
    remembered: str | None = None  # the remembered browser's token (its cookie), if any
    lang: Language = ENGLISH  # the reader's language (negotiated once per page, i18n.py)

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
        # A re-check (reauth) stays one through its own steps: sending a code must not turn it
        # into a plain challenge, which a proof (or a remembered browser) would pass at once.
        carried = (
            {"reauth": "1"} if self.query.get("reauth") and page in ("challenge", "send", "verify") else {}
        )
        query = "&".join(
            f"{k}={quote(v, safe='')}" for k, v in {**params, **carried, "next": self.next}.items()
        )
        return f"{self.base}/{page}?{query}"


def browser_row(browser: RememberedBrowser, lang: Language, current: bool = False) -> dict[str, Any]:
    return {
        "id": browser.id,
        "label": browser.label,
        "network": browser.network,
        "created": lang.when(browser.created_at),
        "seen": lang.when(browser.last_seen_at),
        "expires": lang.when(browser.expires_at),
        "current": current,
    }


def codes_page(
    kit: PageKit, ctx: PageContext, codes: list[str], done_url: str, for_user: str = ""
) -> Response:
    """The one page that ever shows a set of recovery codes: the answer to the POST that made them."""
    text = ctx.lang.gettext(CODES_FILE) + "\n\n" + "\n".join(codes) + "\n"
    return kit.render(
        ctx, "recovery_codes.html", 200, codes=codes, download=text, done_url=done_url, for_user=for_user
    )


def phone_fields(form: Mapping[str, str] | None) -> dict[str, str]:
    """The number a refused form held, to show it again in the same fields."""
    return {"country_code": (form or {}).get("country_code", ""), "phone": (form or {}).get("phone", "")}


def templates(templates_dir: str | os.PathLike[str] | None) -> jinja2.Environment:
    """The built-in templates, under the operator's ``templates_dir`` when there is one."""
    built_in = jinja2.PackageLoader("tfa_middleware", "templates")
    # "tfa_middleware/base.html" is always the built-in file, so that an override of base.html
    # can extend it and change one block instead of copying the whole frame.
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"tfa_middleware": built_in}), built_in]
    if templates_dir:
        loaders.insert(0, jinja2.FileSystemLoader(templates_dir))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        enable_async=False,
        extensions=["jinja2.ext.i18n"],
    )
    # {% trans %} blocks are whole sentences; their line breaks are the template's, not the text's.
    environment.policies["ext.i18n.trimmed"] = True
    # New style: {% trans %} and _() fill named placeholders after the lookup, escaping the values.
    environment.newstyle_gettext = True  # type: ignore[attr-defined]
    return environment


class PageKit:
    """Shared by the page classes: the service, the clock, rendering, and the proof cookie."""

    def __init__(
        self,
        settings: Settings,
        service: TwoFactor,
        codecs: Mapping[str, ProofCodec],
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.service = service
        self.clock = clock
        self._codecs = codecs
        self._csrf = {name: CsrfTokens(name, settings.secret_keys, clock) for name in settings.interfaces}
        # A second factor passed by a user who still lacks a factor that require_factors asks
        # for: signed for "<name>.setup", so no middleware ever takes it as a proof; the
        # account pages take it, to set up what is missing, for phone_change_fresh_seconds.
        self._setup = {
            name: ProofCodec(f"{name}{SETUP}", settings.secret_keys, iface.phone_change_fresh_seconds)
            for name, iface in settings.interfaces.items()
        }
        self._templates = templates(settings.templates_dir)
        self.languages = Languages(settings.templates_dir)

    # ------------------------------------------------------------------ responses

    def render(self, ctx: PageContext, template: str, status_code: int, **values: Any) -> Response:
        html = self._templates.get_template(template).render(
            pages_path=ctx.base,
            interface=ctx.iface.name,
            next=ctx.next_url,
            **self._way_out(ctx),
            url=ctx.url,
            csrf_token=self._csrf[ctx.iface.name].issue(ctx.identity.user_id, ctx.identity.session_id),
            code_length=self.service.code_lengths[1],
            code_min_length=self.service.code_lengths[0],
            branding=self.settings.branding,
            **ctx.lang.template_names(),
            **values,
        )
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")

    def message(self, ctx: PageContext, status_code: int, title: str, text: str) -> Response:
        """A page that says one thing: ``title`` and ``text`` as written (translated by the caller)."""
        html = self._templates.get_template("message.html").render(
            pages_path=ctx.base,
            title=title,
            text=text,
            back=ctx.next_url,
            **self._way_out(ctx),
            branding=self.settings.branding,
            **ctx.lang.template_names(),
        )
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")

    @staticmethod
    def _way_out(ctx: PageContext) -> dict[str, str]:
        """Links out of the pages: the shop's own logout ("Not you?") and the shop's front page."""
        logout = ctx.iface.logout_url
        return {"logout_url": ctx.root + logout if logout else "", "shop_url": ctx.root + "/"}

    # ------------------------------------------------------------------ forms

    async def read_post(
        self, scope: Scope, receive: Receive, ctx: PageContext
    ) -> Mapping[str, str] | Response:
        """The form of a POST from one of our own pages on this site, or the page that refuses it."""
        _ = ctx.lang.gettext
        if cross_site(scope):
            return self.message(
                ctx, 403, _("Request refused"), _("This form can only be sent from this site.")
            )
        form = await read_form(scope, receive, self.settings.max_form_bytes)
        if not self._csrf[ctx.iface.name].valid(
            form.get("csrf_token"), ctx.identity.user_id, ctx.identity.session_id
        ):
            return self.message(
                ctx, 403, _("This form has expired"), _("Go back, reload the page and try again.")
            )
        return form

    # ------------------------------------------------------------------ the proof cookie

    async def set_proof(
        self,
        response: Response,
        ctx: PageContext,
        generation: int,
        method: str,
        browser: str = "",
        *,
        until: float | None = None,
    ) -> None:
        """Issue a proof of a second factor done just now, for this user and login; it carries the
        login's last sign-out it has seen (one indexed read, only for a login with a session id),
        and the remembered browser's digest when there is one. With ``until`` (an exemption's or
        a grace's end) the proof dies then at the latest, on every worker: its issue time is set
        back so that its lifetime ends at ``until`` (such a proof never meets a step-up rule, so
        its age means nothing else), and the cookie goes with it."""
        user_id, session_id = ctx.identity.user_id, ctx.identity.session_id
        try:
            seen = await self.service.signed_out_at(ctx.iface.name, user_id, session_id)
        except StoreUnavailable:
            seen = 0.0  # the code was right: a proof that has seen nothing, void if this login was signed out
        now, lifetime = self.clock(), ctx.iface.proof_max_age_seconds
        issued = now if until is None else min(now, until - lifetime)
        value = self._codecs[ctx.iface.name].issue(
            user_id, generation, issued, method, session_id, seen, browser
        )
        name = proof_cookie_name(ctx.iface.proof_cookie, ctx.https)
        header = proof_set_cookie(name, value, max(1, int(issued + lifetime - now)), ctx.https)
        response.headers.append("set-cookie", header)
        self.service.metrics.proof_issued(method)

    @staticmethod
    def clear_proof(response: Response, ctx: PageContext) -> None:
        name = proof_cookie_name(ctx.iface.proof_cookie, ctx.https)
        response.headers.append("set-cookie", proof_clear_cookie(name, ctx.https))

    async def set_proof_or_setup(
        self, response: Response, ctx: PageContext, generation: int, method: str, browser: str = ""
    ) -> bool:
        """The proof, or, while the user lacks a factor that require_factors asks for, the set-up
        proof that lets them add it (False: the caller sends them to the account page)."""
        required = ctx.iface.require_factors
        status = await self.service.status(ctx.iface.name, ctx.identity.user_id) if required else None
        if status is None or not missing_factors(ctx.iface, status.factors):
            await self.set_proof(response, ctx, generation, method, browser)
            return True
        value = self._setup[ctx.iface.name].issue(
            ctx.identity.user_id, generation, self.clock(), method, ctx.identity.session_id
        )
        name = proof_cookie_name(f"{ctx.iface.proof_cookie}{SETUP_COOKIE}", ctx.https)
        max_age = ctx.iface.phone_change_fresh_seconds
        response.headers.append("set-cookie", proof_set_cookie(name, value, max_age, ctx.https))
        return False

    def setup_proof(self, scope: Scope, iface: InterfaceSettings, identity: Identity) -> Proof | None:
        """The set-up proof of this request, if any, for this user and login."""
        value = cookie(scope, proof_cookie_name(f"{iface.proof_cookie}{SETUP_COOKIE}", is_https(scope)))
        proof = self._setup[iface.name].read(value, self.clock()) if value else None
        if proof is None or proof.user_id != identity.user_id:
            return None
        return proof if proof.session_digest == session_digest(identity.session_id) else None

    @staticmethod
    def clear_setup(response: Response, ctx: PageContext) -> None:
        name = proof_cookie_name(f"{ctx.iface.proof_cookie}{SETUP_COOKIE}", ctx.https)
        response.headers.append("set-cookie", proof_clear_cookie(name, ctx.https))

    @staticmethod
    def set_remembered(response: Response, ctx: PageContext, token: str) -> None:
        """The remembered browser's cookie: HttpOnly, SameSite=Lax, ``__Host-`` over https, for
        the interface's remember_days."""
        name = remember_cookie_name(ctx.iface, ctx.https)
        max_age = ctx.iface.remember_days * 86400
        response.headers.append("set-cookie", proof_set_cookie(name, token, max_age, ctx.https))

    @staticmethod
    def clear_remembered(response: Response, ctx: PageContext) -> None:
        name = remember_cookie_name(ctx.iface, ctx.https)
        response.headers.append("set-cookie", proof_clear_cookie(name, ctx.https))

    def fresh(self, ctx: PageContext) -> bool:
        """A proof young enough to change the second factor it proves (``phone_change_fresh_seconds``)."""
        proof = ctx.proof
        # A remembered browser skipped the code: it proves the browser, not the person.
        return (
            proof is not None
            and proof.method not in NOT_TYPED  # nor an exemption or a grace: nobody typed a code
            and self.clock() - proof.issued_at <= ctx.iface.phone_change_fresh_seconds
        )

    # ------------------------------------------------------------------ texts

    @staticmethod
    def explain(ctx: PageContext, exc: InvalidInput) -> str:
        """A refused input's message in the reader's language (its values filled after the lookup)."""
        message = getattr(exc, "message", "") or str(exc)
        return ctx.lang.gettext(message, **getattr(exc, "values", {}))

    @staticmethod
    def send_refusal(outcome: SendOutcome, lang: Language) -> tuple[str, int]:
        """The message and status for a send that a limit refused."""
        assert outcome.refusal is not None
        message, code = SEND_REFUSALS[outcome.refusal]
        return lang.gettext(message, in_wait=lang.in_duration(outcome.retry_after)), code

    def verify_error(self, outcome: VerifyOutcome, lang: Language, factor: str = "sms") -> str:
        """The message for a code of ``factor`` that did not let the user in."""
        wait = lang.duration(outcome.retry_at - self.clock())
        if outcome.status is VerifyStatus.MALFORMED:
            if factor != "sms":
                return lang.gettext(MALFORMED.get(factor, WRONG_CODE))
            low, high = self.service.code_lengths
            if low == high:
                return lang.gettext(MALFORMED_SMS, digits=lang.number(low))
            return lang.gettext(MALFORMED_SMS_RANGE, low=lang.number(low), high=lang.number(high))
        if outcome.status is VerifyStatus.WAIT:
            return lang.gettext(WAIT, wait=wait)
        if outcome.status is VerifyStatus.LOCKED:
            return lang.gettext(LOCKED, wait=wait)
        return lang.gettext(WRONG_CODES.get(factor, WRONG_CODE))

    async def waits(self, ctx: PageContext) -> dict[str, Any]:
        """What the page must say the user is waiting for: a lock, and the resend cooldown (its
        countdown's texts too, one a second, so the script counts down in the reader's language)."""
        waits = await self.service.waits(ctx.iface.name, ctx.identity.user_id)
        now = self.clock()
        send_wait = max(0, int(waits.next_send_at - now + 0.999)) if waits.next_send_at else 0
        lang = ctx.lang
        locked = (
            lang.gettext(LOCKED, wait=lang.duration(waits.locked_until - now)) if waits.locked_until else ""
        )
        countdown = [
            lang.ngettext(
                "You can ask for a new code in %(num)s second.",
                "You can ask for a new code in %(num)s seconds.",
                left,
            )
            if left
            else lang.gettext("You can ask for a new code now.")
            for left in range(min(send_wait, MAX_COUNTDOWN) + 1)
        ]
        return {"send_wait": send_wait, "locked": locked, "countdown": countdown if send_wait else []}
