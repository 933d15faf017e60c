"""require_factors (issue 15): a user who passes the challenge without a factor the interface
requires gets a set-up proof, which opens the account pages and nothing else, until it is set up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factors import app_code, secret_on
from tests.harness import ADMIN_PHONE, Harness, config
from tfa_middleware import ConfigError, settings_from_mapping


@pytest.fixture
async def h(make_harness: Callable[..., Any], tmp_path: Path) -> Harness:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["require_factors"] = ["totp", "recovery"]
    harness: Harness = await make_harness(interfaces=interfaces)
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    return harness


async def test_the_shop_stays_closed_until_the_required_factors_are_set_up(h: Harness) -> None:
    headers = h.as_user("alice")
    await h.send(headers)
    verified = await h.verify(headers, await h.latest_code(), next_="/admin/orders")
    assert verified.status_code == 303
    assert verified.headers["location"].startswith("/admin/_2fa/account?setup=1")
    assert "tfa_admin" not in verified.cookies
    assert "tfa_admin_setup" in verified.cookies
    # The set-up proof is no proof: the shop and the other pages refuse it.
    assert (await h.client.get("/admin/orders", headers=headers)).status_code == 303
    assert (await h.client.get("/admin/_2fa/phone", headers=headers)).status_code == 303
    page = await h.client.get(verified.headers["location"], headers=headers)
    # One whole sentence for each factor still missing (never a sentence assembled from pieces).
    assert "This account needs an authenticator app: set one up below" in page.text
    assert "This account needs recovery codes: get them below" in page.text
    token = await h.csrf(headers, "/admin/_2fa/account")
    begun = await h.client.post(
        "/admin/_2fa/account", data={"csrf_token": token, "action": "add_app"}, headers=headers
    )
    secret = secret_on((await h.client.get(begun.headers["location"], headers=headers)).text)
    await h.client.post(
        "/admin/_2fa/app",
        data={"csrf_token": token, "action": "confirm", "code": app_code(secret, h.clock.now)},
        headers=headers,
    )
    still = await h.client.get("/admin/_2fa/account", headers=headers)
    assert "This account needs recovery codes" in still.text
    assert (await h.client.get("/admin/orders", headers=headers)).status_code == 303
    await h.client.post(
        "/admin/_2fa/account", data={"csrf_token": token, "action": "recovery_codes"}, headers=headers
    )
    done = await h.client.get("/admin/_2fa/account?next=/admin/orders", headers=headers)
    assert "All set" in done.text
    assert "tfa_admin" in done.cookies
    assert (await h.client.get("/admin/orders", headers=headers)).text == "shop page /admin/orders"


async def test_the_set_up_proof_expires(h: Harness) -> None:
    headers = h.as_user("alice")
    await h.send(headers)
    await h.verify(headers, await h.latest_code())
    h.clock.advance(601)
    page = await h.client.get("/admin/_2fa/account", headers=headers)
    assert page.status_code == 303
    assert "reauth=1" in page.headers["location"]


def test_sms_cannot_be_required_and_what_is_required_must_be_allowed(tmp_path: Path) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["factors"] = ["totp", "sms"]
    interfaces["admin"]["require_factors"] = ["sms", "recovery"]
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(config(tmp_path, interfaces=interfaces))
    assert exc.value.problems == [
        "interfaces.admin.require_factors[0]: sms: a phone is asked for at enrollment "
        "(on_missing_phone: enroll); list totp or recovery",
        "interfaces.admin.require_factors[1]: 'recovery' is not in factors ['totp', 'sms']",
    ]


@pytest.mark.parametrize(
    ("factors", "problem"),
    [
        ([], "must allow at least one factor"),
        (["recovery"], "recovery codes are a way back, not a way in"),
        (["totp", "totp"], "'totp' is listed twice"),
        (["email"], "item 0: must be one of webauthn, totp, sms, recovery, got 'email'"),
    ],
)
def test_the_factors_of_an_interface_are_checked(tmp_path: Path, factors: list[str], problem: str) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["factors"] = factors
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(config(tmp_path, interfaces=interfaces))
    assert any(problem in p for p in exc.value.problems), exc.value.problems
