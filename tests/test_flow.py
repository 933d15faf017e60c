"""The whole flow through the middleware: stopped, code sent to the outbox, verified, let in."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.harness import Harness
from tfa_middleware.store import outbox as outbox_rows


async def test_unauthenticated_and_unprotected_requests_pass_through(harness: Harness) -> None:
    # The tests' shop serves every page to anybody: to a request with nobody logged in, the guard
    # withholds a protected page (the resolver may be blind), and passes the unprotected ones.
    withheld = await harness.client.get("/admin/orders")
    assert withheld.status_code == 403
    assert "shop page" not in withheld.text
    assert (await harness.client.get("/admin/login")).text == "shop page /admin/login"  # exempt
    assert (await harness.client.get("/", headers=harness.as_user("alice"))).status_code == 200


async def test_browser_is_sent_to_the_challenge_with_next(harness: Harness) -> None:
    response = await harness.client.get("/admin/orders?page=2", headers=harness.as_user("alice"))
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/admin/_2fa/challenge"
    assert parse_qs(location.query)["next"] == ["/admin/orders?page=2"]


async def test_full_flow_send_outbox_verify_access(harness: Harness) -> None:
    alice = harness.as_user("alice")
    challenge = await harness.client.get("/admin/_2fa/challenge", headers=alice)
    assert challenge.status_code == 200
    assert "+1 ••• ••• 0123" in challenge.text
    assert 'autocomplete="one-time-code"' in challenge.text
    assert await outbox_rows.latest(harness.service.store) == []  # a GET never sends

    sent = await harness.send(alice)
    assert sent.status_code == 303
    assert "sent=1" in sent.headers["location"]
    code = await harness.latest_code()

    verified = await harness.verify(alice, code, next_="/admin/orders")
    assert verified.status_code == 303
    assert verified.headers["location"] == "/admin/orders"
    cookie_header = verified.headers["set-cookie"]
    assert "httponly" in cookie_header.lower()
    assert "samesite=lax" in cookie_header.lower()
    assert "secure" not in cookie_header.lower()  # plain http in this test

    response = await harness.client.get("/admin/orders", headers=alice)
    assert response.status_code == 200
    assert response.text == "shop page /admin/orders"
    api = await harness.client.get("/admin/api/orders", headers={**alice, "accept": "application/json"})
    assert api.json() == {"ok": True, "tfa": True}
