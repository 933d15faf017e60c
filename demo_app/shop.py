"""The demo shop itself: catalog, customer account, admin orders and users, its own log-in.

Nothing here knows about the second factor, except the admin users page, which shows each
user's state through the service API the way a real shop's user list would. The shop keeps the
logged-in user in its Starlette session (``admin_id`` / ``customer_id`` plus a per-login ``sid``);
the middleware reads that cookie from outside.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from tfa_middleware import InvalidPhoneNumber, StoreUnavailable

if TYPE_CHECKING:
    from tfa_middleware import TwoFactor

log = logging.getLogger("demo_app")

# Labelled so nobody mistakes it for a real secret: anyone can forge sessions with it.
DEMO_SHOP_SECRET = "demo-only-shop-secret-change-me-0123456789"  # noqa: S105
SESSION_COOKIE = "session"
SESSION_MAX_AGE = 14 * 24 * 3600  # must equal identity.max_age_seconds in config.yaml

ADMIN_KEY = "admin_id"
CUSTOMER_KEY = "customer_id"
SID_KEY = "sid"

MAX_FORM_BYTES = 4096  # a log-in form is two short fields

Role = Literal["admin", "vendor", "customer"]


def shop_secret() -> str:
    # An empty variable counts as unset, exactly as the middleware's ${SHOP_SECRET:-...} reads it,
    # so the shop and the middleware always agree on the key.
    return os.environ.get("SHOP_SECRET") or DEMO_SHOP_SECRET


# --------------------------------------------------------------------------- users


@dataclass(frozen=True, slots=True)
class PasswordHash:
    salt: bytes
    digest: bytes

    @classmethod
    def make(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(16)
        return cls(salt, _scrypt(password, salt))

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(self.digest, _scrypt(password, self.salt))


def _scrypt(password: str, salt: bytes) -> bytes:
    # n=2**14, r=8: about 16 MiB and a few tens of milliseconds per guess.
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    role: Role
    password: PasswordHash

    @property
    def interface(self) -> str:
        """The tfa-middleware interface this account signs in to (vendors use the admin side)."""
        return "customer" if self.role == "customer" else "admin"


class Directory:
    """The shop's users, in memory; passwords are hashed when the shop is built."""

    def __init__(self, accounts: list[tuple[str, str, str, Role, str]]) -> None:
        self.users = [
            User(uid, email, name, role, PasswordHash.make(pw)) for uid, email, name, role, pw in accounts
        ]
        self._by_email = {u.email: u for u in self.users}
        self._by_id = {u.id: u for u in self.users}
        # Unknown e-mail addresses are checked against this too, so that the time a wrong
        # log-in takes does not tell whether the address exists.
        self._decoy = PasswordHash.make(secrets.token_urlsafe(16))
        # A sign-up picks the next id, gives it a phone (an await) and only then adds the user:
        # without this lock, sign-ups at the same moment would all pick the same id.
        self.signups = asyncio.Lock()

    def add(self, user_id: str, email: str, name: str, password: str) -> User:
        """A new customer (the sign-up page) with the id from :meth:`next_id`; the caller holds
        :attr:`signups` and has checked the address is free."""
        user = User(user_id, email.strip().lower(), name, "customer", PasswordHash.make(password))
        self.users.append(user)
        self._by_email[user.email] = user
        self._by_id[user.id] = user
        return user

    def taken(self, email: str) -> bool:
        return email.strip().lower() in self._by_email

    def next_id(self) -> str:
        return str(len(self.users) + 1)

    def get(self, user_id: object) -> User | None:
        return self._by_id.get(user_id) if isinstance(user_id, str) else None

    def authenticate(self, email: str, password: str, roles: tuple[Role, ...]) -> User | None:
        user = self._by_email.get(email.strip().lower())
        hashed = user.password if user is not None else self._decoy
        ok = hashed.matches(password)
        if user is None or not ok or user.role not in roles:
            return None
        return user


DEMO_ACCOUNTS: list[tuple[str, str, str, Role, str]] = [
    ("1", "admin@example.com", "Ada Admin", "admin", "admin"),
    ("2", "vendor@example.com", "Victor Vendor", "vendor", "vendor"),
    ("3", "customer@example.com", "Carla Customer", "customer", "customer"),
]


# --------------------------------------------------------------------------- catalog and orders


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    blurb: str
    price_cents: int


@dataclass(frozen=True, slots=True)
class Order:
    number: str
    placed: date
    customer_id: str | None
    customer_email: str
    lines: tuple[tuple[str, int], ...]  # (sku, quantity)
    status: str


PRODUCTS = {
    p.sku: p
    for p in (
        Product("MUG-01", "Enamel camping mug", "Keeps coffee hot, survives the drop.", 1450),
        Product("TEE-02", "Organic cotton T-shirt", "Heavyweight, boxy fit, four colours.", 2900),
        Product("NB-03", "Dot-grid notebook", "A5, 160 pages, lies flat.", 1200),
        Product("BAG-04", "Waxed canvas tote", "Fits a laptop and the groceries.", 4800),
    )
}

ORDERS = (
    Order("10041", date(2025, 3, 2), "3", "customer@example.com", (("MUG-01", 2),), "Shipped"),
    Order("10042", date(2025, 3, 9), None, "guest@example.net", (("BAG-04", 1),), "Processing"),
    Order(
        "10043",
        date(2025, 3, 14),
        "3",
        "customer@example.com",
        (("NB-03", 3), ("TEE-02", 1)),
        "Processing",
    ),
    Order("10044", date(2025, 3, 15), None, "sam@example.org", (("TEE-02", 2),), "Awaiting payment"),
)


def order_total(order: Order) -> int:
    return sum(PRODUCTS[sku].price_cents * qty for sku, qty in order.lines)


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


# --------------------------------------------------------------------------- HTTP


TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
TEMPLATES.env.filters["money"] = money
TEMPLATES.env.globals["order_total"] = order_total
TEMPLATES.env.globals["products"] = PRODUCTS


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    directory: Directory = request.app.state.directory
    context.setdefault("admin", directory.get(request.session.get(ADMIN_KEY)))
    context.setdefault("customer", directory.get(request.session.get(CUSTOMER_KEY)))
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


async def _read_form(request: Request) -> Mapping[str, str]:
    # The shop parses its small url-encoded forms itself instead of pulling in python-multipart.
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "Cross-site form posts are refused.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "Form too large.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "Malformed form.") from None
    return {key: values[0] for key, values in fields.items()}


def _log_in(request: Request, key: str, user: User) -> None:
    request.session[key] = user.id
    # One sid per shop session: a second log-in in the same browser (customer beside admin)
    # must not void the first one's second factor. Log-out clears the whole session, so the
    # next log-in gets a new sid and every proof bound to the old one stops working.
    request.session.setdefault(SID_KEY, secrets.token_urlsafe(24))


async def catalog(request: Request) -> Response:
    return _render(request, "catalog.html", items=list(PRODUCTS.values()))


async def customer_login(request: Request) -> Response:
    error = None
    if request.method == "POST":
        form = await _read_form(request)
        directory: Directory = request.app.state.directory
        user = directory.authenticate(form.get("email", ""), form.get("password", ""), ("customer",))
        if user is not None:
            _log_in(request, CUSTOMER_KEY, user)
            return RedirectResponse("/account", status_code=303)
        error = "Wrong e-mail address or password."
    return _render(
        request,
        "login.html",
        status_code=400 if error else 200,
        error=error,
        title="Customer log-in",
        action="/login",
        hints=[("customer@example.com", "customer", "has a phone: you will get the challenge page")],
    )


async def signup(request: Request) -> Response:
    """A customer signs up and gives their phone at once: the shop hands it to tfa-middleware,
    which asks for the code that confirms it at the first visit to /account."""
    form: Mapping[str, str] = {}
    error = None
    if request.method == "POST":
        form = await _read_form(request)
        directory: Directory = request.app.state.directory
        tfa: TwoFactor | None = request.app.state.tfa
        email, name, password = (
            form.get("email", "").strip(),
            form.get("name", "").strip(),
            form.get("password", ""),
        )
        if "@" not in email or not name or len(email) > 200 or len(name) > 100:
            error = "Give your name and e-mail address."
        elif not 8 <= len(password) <= 200:
            error = "Choose a password of at least 8 characters."
        else:
            # The address check, the id, its phone and the account: one step for each sign-up.
            async with directory.signups:
                user_id = directory.next_id()
                if directory.taken(email):
                    error = "There is already an account with that e-mail address: log in instead."
                elif tfa is not None:
                    try:
                        await tfa.set_phone(
                            "customer", user_id, form.get("country_code", ""), form.get("phone", "")
                        )
                    except InvalidPhoneNumber as exc:
                        error = str(exc)
                if error is None:
                    user = directory.add(user_id, email, name, password)
            if error is None:
                _log_in(request, CUSTOMER_KEY, user)
                return RedirectResponse("/account", status_code=303)
    return _render(request, "signup.html", status_code=400 if error else 200, error=error, form=form)


async def account(request: Request) -> Response:
    directory: Directory = request.app.state.directory
    user = directory.get(request.session.get(CUSTOMER_KEY))
    if user is None:
        return RedirectResponse("/login", status_code=303)
    mine = [o for o in ORDERS if o.customer_id == user.id]
    return _render(request, "account.html", user=user, orders=mine)


async def logout(request: Request) -> Response:
    # GET is accepted as well so that a typed /logout works: the only thing a forged request
    # can do here is log someone out.
    tfa: TwoFactor | None = request.app.state.tfa
    sid = request.session.get(SID_KEY)
    if tfa is not None and isinstance(sid, str):
        # Clearing the session is not enough: its cookie is signed, not stored, so a copy of it
        # keeps working. Ending the second factor of this login makes the copy's proof void.
        # Both log-ins share the session (and its sid), and log-out clears both.
        for key, interface in ((ADMIN_KEY, "admin"), (CUSTOMER_KEY, "customer")):
            user_id = request.session.get(key)
            if isinstance(user_id, str):
                try:
                    await tfa.sign_out(interface, user_id, session_id=sid)
                except StoreUnavailable:
                    # Log-out itself must still work; only the copy's proof outlives it.
                    log.exception("could not end the second factor of %s user %s", interface, user_id)
    request.session.clear()
    target = "/admin/login" if request.url.path.startswith("/admin") else "/"
    return RedirectResponse(target, status_code=303)


async def admin_login(request: Request) -> Response:
    error = None
    if request.method == "POST":
        form = await _read_form(request)
        directory: Directory = request.app.state.directory
        user = directory.authenticate(form.get("email", ""), form.get("password", ""), ("admin", "vendor"))
        if user is not None:
            _log_in(request, ADMIN_KEY, user)
            return RedirectResponse("/admin", status_code=303)
        error = "Wrong e-mail address or password."
    return _render(
        request,
        "login.html",
        status_code=400 if error else 200,
        error=error,
        title="Admin log-in",
        action="/admin/login",
        hints=[
            ("admin@example.com", "admin", "has a phone: you will get the challenge page"),
            ("vendor@example.com", "vendor", "no phone yet: you will be asked to enroll one"),
        ],
    )


def _require_admin(request: Request) -> User | None:
    directory: Directory = request.app.state.directory
    return directory.get(request.session.get(ADMIN_KEY))


async def admin_orders(request: Request) -> Response:
    user = _require_admin(request)
    if user is None:
        return RedirectResponse("/admin/login", status_code=303)
    return _render(request, "admin_orders.html", user=user, orders=ORDERS, section="orders")


async def admin_users(request: Request) -> Response:
    user = _require_admin(request)
    if user is None:
        return RedirectResponse("/admin/login", status_code=303)
    directory: Directory = request.app.state.directory
    tfa: TwoFactor | None = request.app.state.tfa
    rows = []
    for u in directory.users:
        state, phone = "unknown", None
        if tfa is not None:
            status = await tfa.status(u.interface, u.id)
            state, phone = status.state, status.masked_phone
        rows.append((u, state, phone))
    return _render(request, "admin_users.html", user=user, rows=rows, section="users")


def build_shop(
    *,
    tfa: TwoFactor | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    secret_key: str | None = None,
) -> Starlette:
    """The shop as a Starlette app; ``tfa`` only feeds the admin users page."""
    routes = [
        Route("/", catalog),
        Route("/login", customer_login, methods=["GET", "POST"]),
        Route("/signup", signup, methods=["GET", "POST"]),
        Route("/account", account),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route("/admin/login", admin_login, methods=["GET", "POST"]),
        Route("/admin", admin_orders),
        Route("/admin/users", admin_users),
        Route("/admin/logout", logout, methods=["GET", "POST"]),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=secret_key or shop_secret(),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            same_site="lax",
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.directory = Directory(DEMO_ACCOUNTS)
    app.state.tfa = tfa
    return app
