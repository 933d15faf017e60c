"""The Django admin example (examples/django_admin) under a real uvicorn, through Django's own ASGI
handler wrapped by the middleware, walked over real HTTP as its README tells a newcomer to: log in
at Django's admin, be sent to the second factor, enroll and verify with the code from the sandbox
outbox, reach the admin; log out and in again (asked again); a customer (left to Django, never
challenged); a password changed elsewhere (Django's log-in page again)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.django_example import EXAMPLE, Site, prepared_site, walk_as_a_customer, walk_the_admin
from tests.servers import uvicorn_server


@pytest.fixture(scope="module", params=["db", "signed_cookies", "cache"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The example with fresh databases, on one of Django's session engines: one server for both
    walks (they use different users)."""
    folder = tmp_path_factory.mktemp(f"django-{request.param}")
    site = prepared_site(folder, request.param)
    with uvicorn_server("adminsite.asgi:application", folder, site.env, cwd=EXAMPLE) as url:
        site.url = url
        yield site


def test_the_admin_asks_for_the_second_factor_and_again_after_logging_in_again(site: Site) -> None:
    walk_the_admin(site)


def test_a_customer_is_left_to_django_never_challenged(site: Site) -> None:
    walk_as_a_customer(site)


def test_check_config_sets_up_django_as_manage_py_does(tmp_path: Path) -> None:
    """check-config builds each interface's resolver as the server will: with the example's
    DJANGO_SETTINGS_MODULE it sets Django up and passes; without it, it says what is missing."""
    site = prepared_site(tmp_path, "db")
    command = [sys.executable, "-m", "tfa_middleware.cli", "check-config", "config.yaml"]

    def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120)

    passed = check(site.env)
    assert passed.returncode == 0, passed.stderr
    assert "valid" in passed.stdout
    unset = check({k: v for k, v in site.env.items() if k != "DJANGO_SETTINGS_MODULE"})
    assert unset.returncode != 0
    assert "interfaces.admin.identity: from: django_session" in unset.stderr
    assert "DJANGO_SETTINGS_MODULE" in unset.stderr
    wrong = check({**site.env, "DJANGO_SETTINGS_MODULE": "adminsite.no_such_settings"})
    assert wrong.returncode != 0
    assert "cannot set up Django" in wrong.stderr
