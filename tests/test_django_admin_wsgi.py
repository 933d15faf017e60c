"""The Django admin example (examples/django_admin) under a real gunicorn with 2 workers (sync and
gthread), through Django's own WSGI handler wrapped by the middleware (``adminsite/wsgi.py``): the
walks of tests/test_django_admin.py (ASGI, uvicorn) over real HTTP. Staff: log in at Django's
admin, the second factor with the code from the sandbox outbox, the admin; log out and in again:
asked again; a password changed elsewhere: Django's log-in page. A customer: never challenged.

Django's database session engine (the default): the workers share it, as a real site's do. (The
local-memory cache engine does not: each worker would have its own sessions.) One server per
worker class serves both walks; they use different users.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.django_example import EXAMPLE, Site, prepared_site, walk_as_a_customer, walk_the_admin
from tests.servers import gunicorn_server


@pytest.fixture(scope="module", params=["sync", "gthread"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp(f"django-{request.param}")
    site = prepared_site(folder, "db")
    with gunicorn_server(
        "adminsite.wsgi:application", folder, site.env, worker_class=request.param, cwd=EXAMPLE
    ) as url:
        site.url = url
        yield site
    log = (folder / "gunicorn.log").read_text()
    assert "Traceback" not in log, log


def test_the_admin_asks_for_the_second_factor_and_again_after_logging_in_again(site: Site) -> None:
    walk_the_admin(site)


def test_a_customer_is_left_to_django_never_challenged(site: Site) -> None:
    walk_as_a_customer(site)
