"""The in-process Django project (``tests/django_project``): set up once per test process, its
users, sessions written by each session engine, and what Django's own request code makes of a
set of Cookie headers (the judge the ``django_session`` resolver is held to).

Django is configured once per process and for good; the environment variables it reads at set-up
are removed again, so that no later subprocess of another test inherits them.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tfa_middleware.errors import IdentityUnreadable
from tfa_middleware.identity.django import DjangoSessionResolver

ENGINES = {
    name: f"django.contrib.sessions.backends.{name}"
    for name in ("db", "cache", "cached_db", "signed_cookies", "file")
}
SETTINGS_MODULE = "tests.django_project.settings"
PASSWORD = "correct horse battery staple"
Headers = list[tuple[bytes, bytes]]


def setup_django(folder: Path) -> None:
    """Django configured on the test project, its tables created in a SQLite file in ``folder``."""
    import django
    from django.apps import apps

    if apps.ready:
        return
    (folder / "sessions").mkdir(exist_ok=True)
    variables = {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "TFA_TEST_DJANGO_DB": str(folder / "django.sqlite3"),
        "TFA_TEST_DJANGO_SESSIONS": str(folder / "sessions"),
    }
    os.environ.update(variables)
    try:
        django.setup()
        from django.conf import settings

        settings.DATABASES  # noqa: B018 - read now, while the variables are set
    finally:
        for name in variables:
            os.environ.pop(name, None)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_users() -> dict[str, Any]:
    """One user of each kind the ``require`` condition tells apart, by name."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    model.objects.all().delete()
    create = model.objects.create_user
    return {
        "staff": create("staff", password=PASSWORD, is_staff=True),
        "customer": create("customer", password=PASSWORD),
        "inactive_staff": create("inactive", password=PASSWORD, is_staff=True, is_active=False),
        "superuser": model.objects.create_superuser("root", password=PASSWORD),
    }


@contextmanager
def engine(name: str) -> Iterator[None]:
    """Django's SESSION_ENGINE is ``ENGINES[name]`` inside the block."""
    from django.test import override_settings

    with override_settings(SESSION_ENGINE=ENGINES[name]):
        yield


def new_session(data: dict[str, Any]) -> str:
    """A session written by the current engine, as Django's login would leave it; its key (for
    signed_cookies, the signed session itself: the cookie's value)."""
    from django.conf import settings

    store = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
    store.update(data)
    store.save()
    return str(store.session_key)


def logged_in(user: Any, backend: str = "django.contrib.auth.backends.ModelBackend") -> dict[str, Any]:
    """The keys django.contrib.auth.login puts into the session."""
    return {
        "_auth_user_id": user._meta.pk.value_to_string(user),
        "_auth_user_backend": backend,
        "_auth_user_hash": user.get_session_auth_hash(),
    }


def scope(headers: Headers, path: str = "/admin/") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": headers}


def django_sees(headers: Headers) -> tuple[str, Any]:
    """What the shop's own request makes of these headers: Django's ASGI request, its
    SessionMiddleware and ``get_user`` (as AuthenticationMiddleware calls it)."""
    from django.contrib.auth import get_user
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.core.handlers.asgi import ASGIRequest

    request = ASGIRequest(scope(headers), io.BytesIO())
    SessionMiddleware(lambda _request: None).process_request(request)
    try:
        user = get_user(request)
    except Exception as exc:  # Django's own request fails here: the shop answers 500
        return ("error", type(exc).__name__)
    return ("user", user)


def resolver_sees(resolver: DjangoSessionResolver, headers: Headers) -> tuple[str, Any]:
    """What the resolver answers, read both ways: in this thread (the WSGI middleware's way, first,
    so that a resolver with ``cache_seconds: 0`` reads twice) and awaited (ASGI's): they agree."""
    here = _seen(lambda: resolver.in_this_thread(scope(headers)))
    awaited = _seen(lambda: asyncio.run(resolver(scope(headers))))
    assert here == awaited, (here, awaited)
    return awaited


def _seen(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        identity = read()
    except IdentityUnreadable as exc:
        return ("error", str(exc))
    return ("user", identity)


def stored(key: str) -> dict[str, Any]:
    """The session as the current engine holds it now (to see that a read changed nothing)."""
    from django.conf import settings

    return dict(importlib.import_module(settings.SESSION_ENGINE).SessionStore(key).load())
