"""``from: django_session``: the shop's Django session, read in the shop's own process through
Django's own code: the session engine ``SESSION_ENGINE`` names (db, cache, cached_db,
signed_cookies, file, or the shop's own) and ``django.contrib.auth.get_user``, which checks the
backend path, loads the user and verifies the session hash (a password change ends the login).

Why Django's code and not a reader of our own: the engines differ (a database row, a cache entry,
a signed cookie), and ``get_user`` holds rules a copy would drift from (the backend must still be
in ``AUTHENTICATION_BACKENDS``, ``SECRET_KEY_FALLBACKS`` during a rotation, a custom backend's
``get_user``). The one difference: the session store we hand ``get_user`` never writes
(:func:`read_only`). Where Django's own request would flush a session whose hash no longer matches,
or re-key it after a secret rotation, it still will; a read of ours changes nothing the shop sees.

The cookie is read as Django's ASGI handler reads it (every ``Cookie`` header, joined with ``,``,
then ``django.http.cookie.parse_cookie``), so both see the same session key.

Cost: a returning browser is a dictionary look-up (the Cookie header → the session key → what
Django said about it, remembered for ``cache_seconds``): no query, no thread hop. A new session key
is read in a worker thread (Django's ORM must not run on the event loop:
``SynchronousOnlyOperation``), with Django's own connection hygiene around it, as a request has.

Django is imported here, and this module is imported only when an interface uses
``from: django_session``: the core install needs no Django.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from ..cache import BoundedCache
from ..errors import ConfigError, IdentityUnreadable
from .base import Identity, Reading, Warnings, as_identity

EXTRA = "pip install 'tfa-middleware[django]'"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
_NO_SESSION = ""  # remembered for a Cookie header without the session cookie


def django_ready(where: str) -> None:
    """Django must be importable, configured and loaded in this process before the resolver is
    built: otherwise a ConfigError that says what to do (never a resolver that reads nobody)."""
    try:
        from django.apps import apps
    except ImportError:
        raise ConfigError([f"{where}: from: django_session needs Django: {EXTRA}"]) from None
    if not apps.ready:
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            why = (
                "Django is not configured in this process (no DJANGO_SETTINGS_MODULE): wrap the "
                "application that django.core.asgi.get_asgi_application() returns (for doctor, "
                "set DJANGO_SETTINGS_MODULE as manage.py does)"
            )
        else:
            why = (
                "Django's apps are not loaded yet: build the middleware after "
                "get_asgi_application() (or django.setup()), e.g. "
                "TwoFactorMiddleware.from_yaml(get_asgi_application(), 'tfa.yaml')"
            )
        raise ConfigError([f"{where}: from: django_session: {why}"])
    for app in ("django.contrib.auth", "django.contrib.sessions"):
        if not apps.is_installed(app):
            raise ConfigError([f"{where}: from: django_session needs {app!r} in Django's INSTALLED_APPS"])


def setup_for_command_line(where: str) -> None:
    """``tfa-middleware doctor`` runs outside the shop's process: with DJANGO_SETTINGS_MODULE set,
    Django is set up here as ``manage.py`` would (the server itself never does this: there, Django
    must be ready before the middleware is built, or it is a ConfigError)."""
    try:
        import django
        from django.apps import apps
    except ImportError:
        raise ConfigError([f"{where}: from: django_session needs Django: {EXTRA}"]) from None
    if not apps.ready and os.environ.get("DJANGO_SETTINGS_MODULE"):
        try:
            django.setup()
        except Exception as exc:  # the shop's settings module: whatever it raises, say it by name
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise ConfigError([f"{where}: cannot set up Django (DJANGO_SETTINGS_MODULE): {why}"]) from None


def read_only(store: type[Any]) -> type[Any]:
    """The engine's own ``SessionStore``, reading as it always does, but never writing: ``get_user``
    may flush a session (a stale hash) or re-key it (a rotated secret), and that is for the shop's
    own request to do, not for a read made beside it."""

    def nothing(_self: Any, *_args: Any, **_kwargs: Any) -> None:
        return None

    methods: dict[str, Any] = {name: nothing for name in ("save", "create", "delete")}
    # The same name: Django salts the signed session data with the class's __qualname__.
    methods.update(__module__=store.__module__, __qualname__=store.__qualname__)
    return type(store.__name__, (store,), methods)


class DjangoSessionResolver:
    """``from: django_session``: the user Django's ``get_user`` finds in the shop's session.

    Only active users with every attribute in ``require`` true (``is_staff``, ``is_superuser``)
    belong to the interface; a customer on ``/admin`` is nobody there, and Django's admin shows its
    own login. The session key is the session id, so Django's logout (which flushes the session)
    ends the proof; except with ``signed_cookies``, whose key is the session's own content and
    changes with every write: there the proof is not bound (the logout's answer, which deletes or
    rewrites the cookie, ends it: ``session_end``).
    """

    # Reads nothing of the request but its headers (and the scheme): the WSGI middleware gives it
    # the light scope (wsgi/environ.py), without the client and server it would never look at.
    READS_HEADERS_ONLY = True
    MAX_HEADER = 4096

    def __init__(
        self,
        cookie: str | None = None,
        require: Sequence[str] = ("is_staff",),
        cache_seconds: float = 5.0,
        *,
        label: str = "identity",
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = 10_000,
    ) -> None:
        django_ready(label)
        from django.conf import settings
        from django.contrib.auth import get_user
        from django.db import close_old_connections
        from django.http import HttpRequest
        from django.http.cookie import parse_cookie

        self.cookie_name: str = cookie or settings.SESSION_COOKIE_NAME
        self.engine: str = settings.SESSION_ENGINE
        self.require = tuple(require)
        self.cache_seconds = cache_seconds
        self.binds = self.engine != SIGNED_COOKIES
        self._store = read_only(importlib.import_module(self.engine).SessionStore)
        self._get_user = get_user
        self._request = HttpRequest
        self._parse = parse_cookie
        self._close_old_connections = close_old_connections
        self._clock = clock
        # Keyed by the raw header (bytes, ASGI) or the environ's text (str, WSGI): never equal.
        self._keys: BoundedCache[bytes | str, str] = BoundedCache(cache_size)
        self._readings: BoundedCache[str, tuple[Reading, float]] = BoundedCache(cache_size)
        self._warn = Warnings(label)

    async def __call__(self, scope: Scope) -> Identity | None:
        key = self.session_key(scope)
        if not key:
            return None
        hit = self._readings.get(key)
        if hit is not None and self._clock() < hit[1]:
            return hit[0].identity
        return self._keep(key, await run_in_threadpool(self._read_here, key))

    def in_this_thread(self, scope: Scope) -> Identity | None:
        """The same answer, read in the calling thread: the WSGI middleware's, whose server thread
        may block on the database as Django's own request does (no hop to an event loop)."""
        key = self.session_key(scope)
        if not key:
            return None
        hit = self._readings.get(key)
        if hit is not None and self._clock() < hit[1]:
            return hit[0].identity
        return self._keep(key, self._read_here(key))

    def _keep(self, key: str, reading: Reading) -> Identity | None:
        self._warn(reading)
        if self.cache_seconds > 0:
            self._readings.put(key, (reading, self._clock() + self.cache_seconds))
        return reading.identity

    async def read(self, scope: Scope) -> Reading:
        """What Django makes of this request's session, read now (``doctor``)."""
        key = self.session_key(scope)
        if not key:
            return Reading(None, f"no cookie {self.cookie_name!r}", check="cookie")
        return await self._read(key)

    def session_key(self, scope: Scope) -> str:
        """The session cookie as Django's ASGI request reads it ("" when there is none): every
        header named Cookie in any case, each decoded as latin-1, joined with ","; under WSGI as
        its WSGI request does (:meth:`_environ_key`)."""
        environ = scope.get("wsgi.environ")
        if environ is not None:
            return self._environ_key(environ)
        values = [v for k, v in scope.get("headers", ()) if len(k) == 6 and k.lower() == b"cookie"]
        if not values:
            return _NO_SESSION
        raw = values[0] if len(values) == 1 else b",".join(values)
        key = self._keys.get(raw)
        if key is None:
            key = self._parse(raw.decode("latin-1")).get(self.cookie_name) or _NO_SESSION
            if len(raw) <= self.MAX_HEADER:  # a longer header is parsed every time: it would crowd the cache
                self._keys.put(raw, key)
        return key

    def _environ_key(self, environ: Mapping[str, Any]) -> str:
        """Django's ``WSGIRequest.COOKIES``: the environ's ``HTTP_COOKIE`` (latin-1 text, PEP 3333)
        turned back into its bytes and decoded as UTF-8 with replacement, then parsed."""
        header = environ.get("HTTP_COOKIE")
        if not header:
            return _NO_SESSION
        key = self._keys.get(header)
        if key is None:
            text = header.encode("latin-1").decode(errors="replace")
            key = self._parse(text).get(self.cookie_name) or _NO_SESSION
            if len(header) <= self.MAX_HEADER:
                self._keys.put(header, key)
        return key

    async def _read(self, key: str) -> Reading:
        return await run_in_threadpool(self._read_here, key)

    def _read_here(self, key: str) -> Reading:
        try:
            return self._read_blocking(key)
        except IdentityUnreadable:
            raise
        except Exception as exc:
            # The database or cache behind the sessions is down, a session holds a user id the user
            # model cannot read: Django's own request fails here too. Never "nobody".
            raise IdentityUnreadable(
                f"Django could not read the session ({self.engine}): {type(exc).__name__}: {str(exc)[:200]}"
            ) from exc

    def _read_blocking(self, key: str) -> Reading:
        # What Django's handler does around a request (request_started, request_finished): a
        # connection that broke or outlived CONN_MAX_AGE is closed, never reused from this thread.
        self._close_old_connections()
        try:
            request = self._request()
            request.session = session = self._store(key)
            had_user = "_auth_user_id" in session  # before get_user, which may clear the session
            user = self._get_user(request)
            return self._judge(user, key, had_user)
        finally:
            self._close_old_connections()

    def _judge(self, user: Any, key: str, had_user: bool) -> Reading:
        if not user.is_authenticated:
            if not had_user:
                return Reading(
                    None, "the session holds no user (logged out, expired, or a visitor)", check="session"
                )
            return Reading(
                None,
                "Django's get_user refused the session's user (gone, inactive, a backend no longer in "
                "AUTHENTICATION_BACKENDS, or the password changed since this login)",
                check="user",
            )
        pk = str(user.pk)
        if not getattr(user, "is_active", True):
            return Reading(None, f"Django's user {pk} is not active", check="require")
        for name in self.require:
            if not getattr(user, name, False):
                return Reading(
                    None, f"Django's user {pk} is not {name}: not a user of this interface", check="require"
                )
        identity = as_identity(Identity(pk, key if self.binds else None))
        return Reading(identity, f"Django's session holds user {pk}")
