"""Settings of the in-process Django project. The database file and the session folder come from
the environment, set by ``tests/django_shop.py`` before ``django.setup()``."""

from __future__ import annotations

import os

SECRET_KEY = "tests-only-django-key-not-a-secret"
# A rotation under way: sessions hashed with the old key still hold, as Django documents.
SECRET_KEY_FALLBACKS = ["tests-only-old-django-key"]
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("TFA_TEST_DJANGO_DB", "")}
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Two backends: ModelBackend refuses inactive users in get_user, AllowAllUsersModelBackend does not,
# so the resolver's own "active only" rule is exercised against both.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django.contrib.auth.backends.AllowAllUsersModelBackend",
]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for tests only
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # A cache server that is down: every call raises, as a Redis client does without its server.
    "down": {"BACKEND": "tests.django_project.broken.DownCache"},
}
SESSION_FILE_PATH = os.environ.get("TFA_TEST_DJANGO_SESSIONS") or None
