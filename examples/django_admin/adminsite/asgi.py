"""The ASGI application: Django's own, wrapped by the second factor (the one added line).

Run it from this folder: ``uvicorn adminsite.asgi:application``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from tfa_middleware import TwoFactorMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

application = TwoFactorMiddleware.from_yaml(get_asgi_application(), "config.yaml")
