"""The WSGI twin of the middleware, for apps under gunicorn, uWSGI or any WSGI server::

    from tfa_middleware.wsgi import TwoFactorWSGIMiddleware
    app = TwoFactorWSGIMiddleware.from_yaml(app, "tfa.yaml")

``middleware.py`` holds the journey, ``environ.py`` the scope built from the environ and the
short answers, ``guard.py`` the wrapped ``start_response``, ``loop.py`` the process's event loop.
"""

from __future__ import annotations

from .environ import ENVIRON_KEY
from .middleware import TwoFactorWSGIMiddleware

__all__ = ["ENVIRON_KEY", "TwoFactorWSGIMiddleware"]
