"""The Django site the Django benchmark (``django_admin.py``) runs: settings, one staff-only page
under /admin/ that reads ``request.user`` as every admin view does, and its URLs (ROOT_URLCONF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

BASE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
OTP_MIDDLEWARE = [*BASE_MIDDLEWARE, "django_otp.middleware.OTPMiddleware"]


def settings(folder: Path) -> dict[str, Any]:
    return {
        "SECRET_KEY": "bench-django-key-not-a-secret",
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"],
        "USE_TZ": True,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django_otp",
            "django_otp.plugins.otp_static",
        ],
        "MIDDLEWARE": BASE_MIDDLEWARE,
        "ROOT_URLCONF": __name__,
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(folder / "django.sqlite3")}
        },
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
    }


def staff_page(request: HttpRequest) -> HttpResponse:
    # What the admin checks on every view (AdminSite.has_permission): the user, loaded now.
    allowed = request.user.is_active and request.user.is_staff
    return HttpResponse("ok" if allowed else "no", status=200 if allowed else 403)


urlpatterns = [path("admin/page/", staff_page)]
