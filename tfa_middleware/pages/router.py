"""Which page answers a request under an interface's ``pages_path``, and what a broken part says.

Every POST needs a same-site browser and the CSRF token (``kit.read_post``); ``next`` is only ever
a path inside the interface. Broken parts (database, provider) give a clear 503 page; nothing here
ever shows a traceback. Every answer but the static files carries ``SECURITY_HEADERS``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from ..asgi import client_ip, cookie, header, is_https, scope_value
from ..errors import (
    FormTooLarge,
    InvalidInput,
    ProviderBlocked,
    ProviderError,
    ProviderRateLimited,
    StoreUnavailable,
)
from ..i18n import Language
from ..identity import Identity
from ..proof import Proof, ProofCodec
from ..service import RequestInfo, TwoFactor
from ..settings import InterfaceSettings, Settings
from .account import AccountPages
from .factors import FactorPages
from .kit import (
    BLOCKED,
    RATE_LIMITED,
    RATE_LIMITED_MINUTE,
    SECURITY_HEADERS,
    SEND_UNAVAILABLE,
    UNAVAILABLE,
    PageContext,
    PageKit,
    remember_cookie_name,
)
from .passkeys import PasskeyPages
from .sign_in import SignInPages

log = logging.getLogger("tfa_middleware.pages")

STATIC_DIR = Path(__file__).parent.parent / "static"
SETUP_PAGES = ("account", "app", "passkey")  # where a user adds what require_factors asks for
GetPage = Callable[[PageContext], Awaitable[Response]]
PostPage = Callable[[PageContext, Mapping[str, str]], Awaitable[Response]]


class Pages:
    """The pages of every interface, as the middleware calls them."""

    def __init__(
        self,
        settings: Settings,
        service: TwoFactor,
        codecs: Mapping[str, ProofCodec],
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.kit = PageKit(settings, service, codecs, clock)
        sign_in, account = SignInPages(self.kit), AccountPages(self.kit)
        factors, passkeys = FactorPages(self.kit), PasskeyPages(self.kit)
        self._get: dict[str, GetPage] = {
            "challenge": sign_in.challenge,
            "enroll": sign_in.enroll_page,
            "logout": sign_in.logout_page,
            "phone": account.phone_page,
            "manage": account.manage_page,
            "app": factors.app_page,
            "account": factors.account_page,
        }
        self._post: dict[str, PostPage] = {
            "send": sign_in.send,
            "verify": sign_in.verify,
            "enroll": sign_in.enroll,
            "logout": sign_in.logout,
            "phone": account.phone_post,
            "manage": account.manage_post,
            "app": factors.app_post,
            "account": factors.account_post,
            "passkey": passkeys.post,
        }
        self._static = {
            "static/tfa.css": ((STATIC_DIR / "tfa.css").read_bytes(), "text/css"),
            "static/tfa.js": ((STATIC_DIR / "tfa.js").read_bytes(), "text/javascript"),
            "static/passkeys.js": ((STATIC_DIR / "passkeys.js").read_bytes(), "text/javascript"),
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
                remembered=cookie(scope, remember_cookie_name(iface, is_https(scope))),
                lang=self._language(scope, iface),
            )
            if proof is None and page in SETUP_PAGES:
                # A set-up proof (require_factors): these pages alone take it.
                setup = self.kit.setup_proof(scope, iface, identity)
                if setup is not None:
                    ctx = replace(ctx, proof=setup)
            response = await self._answer(scope, receive, ctx, page, method)
        response.headers.update(self.security_headers)
        await response(scope, receive, send)

    def _language(self, scope: Scope, iface: InterfaceSettings) -> Language:
        """The reader's language: the interface's ``locale``, the shop's cookie or scope key
        (``locale_from``), the browser's Accept-Language, English (i18n.py). Pages only."""
        chosen: object = None
        source = iface.locale_from
        if source is not None and source.cookie:
            chosen = cookie(scope, source.cookie)
        elif source is not None and source.scope_key:
            chosen = scope_value(scope, source.scope_key)
        return self.kit.languages.negotiate(
            iface.locale, chosen if isinstance(chosen, str) else None, header(scope, b"accept-language")
        )

    async def _answer(
        self, scope: Scope, receive: Receive, ctx: PageContext, page: str, method: str
    ) -> Response:
        """The page's answer; for a step that could not finish, a page that says why (a mistake of
        the person's, or a broken part), never a traceback."""
        message, _, lang = self.kit.message, ctx.lang.gettext, ctx.lang
        try:
            return await self._dispatch(scope, receive, ctx, page, method)
        except FormTooLarge as exc:
            return message(ctx, 413, _("That was too much"), self.kit.explain(ctx, exc))
        except InvalidInput as exc:
            return message(ctx, 400, _("That didn't work"), self.kit.explain(ctx, exc))
        except ProviderBlocked as exc:
            log.error("provider refuses %s user %s's number: %s", ctx.iface.name, ctx.identity.user_id, exc)
            return message(ctx, 400, _("We can't text this number"), _(BLOCKED))
        except ProviderRateLimited as exc:
            log.error("provider rate limit on %s for %s: %s", page, ctx.iface.name, exc)
            wait = exc.retry_after_seconds
            text = _(RATE_LIMITED, in_wait=lang.in_duration(wait)) if wait else _(RATE_LIMITED_MINUTE)
            return message(ctx, 503, _("Temporarily unavailable"), text)
        except (StoreUnavailable, ProviderError) as exc:
            log.error("fail closed on %s for %s user %s: %s", page, ctx.iface.name, ctx.identity.user_id, exc)
            text = SEND_UNAVAILABLE if page in ("send", "enroll") else UNAVAILABLE
            return message(ctx, 503, _("Temporarily unavailable"), _(text))
        except Exception:
            log.exception("unexpected error on %s page", page)
            return message(ctx, 500, _("Something went wrong"), _(UNAVAILABLE))

    async def _dispatch(
        self, scope: Scope, receive: Receive, ctx: PageContext, page: str, method: str
    ) -> Response:
        if method in ("GET", "HEAD") and page in self._get:
            return await self._get[page](ctx)
        if method == "POST" and page in self._post:
            form = await self.kit.read_post(scope, receive, ctx)
            if isinstance(form, Response):
                return form
            return await self._post[page](ctx, form)
        if page in self._get or page in self._post:
            return PlainTextResponse("Method not allowed", status_code=405)
        _ = ctx.lang.gettext
        return self.kit.message(ctx, 404, _("Page not found"), _("There is nothing here."))
