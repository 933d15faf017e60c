"""A Django project for the ``django_session`` tests in this process (``tests/django_shop.py``
sets it up): SQLite, the auth and sessions apps, and every session engine's settings."""
