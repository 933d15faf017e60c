"""The WSGI application: Django's own, wrapped by the second factor (the one added line).

Run it from this folder: ``gunicorn adminsite.wsgi:application``.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from tfa_middleware.wsgi import TwoFactorWSGIMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

application = TwoFactorWSGIMiddleware.from_yaml(get_wsgi_application(), "config.yaml")
