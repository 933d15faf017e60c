"""How the challenge answers clients that are not a browser navigation: JSON callers get a 401
they can act on, other methods are redirected to the prefix, and non-HTTP scopes pass untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.asgi_helpers import Recorder, asgi_request
from tests.harness import Harness, shop_app

JSON_CALLERS = {
    "accept json": {"accept": "application/json"},
    "accept json with quality": {"accept": "application/json;q=0.9, */*;q=0.1"},
    "xhr": {"x-requested-with": "XMLHttpRequest"},
    "xhr asking for html": {"x-requested-with": "XMLHttpRequest", "accept": "text/html"},
}


@pytest.mark.parametrize("extra", JSON_CALLERS.values(), ids=JSON_CALLERS.keys())
async def test_json_caller_gets_401_with_the_challenge_url(harness: Harness, extra: dict[str, str]) -> None:
    headers = {"x-test-user": "alice", **extra}
    response = await harness.client.get("/admin/api/orders?page=2", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert "location" not in response.headers
    assert response.json() == {
        "error": "second_factor_required",
        "challenge_url": "/admin/_2fa/challenge?next=%2Fadmin%2Fapi%2Forders%3Fpage%3D2",
    }
    url = urlsplit(response.json()["challenge_url"])
    assert parse_qs(url.query)["next"] == ["/admin/api/orders?page=2"]


@pytest.mark.parametrize(
    "accept", ["text/html", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None]
)
async def test_browser_navigation_is_redirected_not_given_json(harness: Harness, accept: str | None) -> None:
    headers = {"x-test-user": "alice"} | ({"accept": accept} if accept else {})
    response = await asgi_request(harness.app, "/admin/api/orders", headers=headers)  # httpx adds */*
    assert response.status == 303
    assert response.header("location") == "/admin/_2fa/challenge?next=%2Fadmin%2Fapi%2Forders"


async def test_json_caller_with_a_proof_gets_the_api(harness: Harness) -> None:
    await harness.pass_challenge("alice")
    headers = {"x-test-user": "alice", "accept": "application/json"}
    response = await harness.client.get("/admin/api/orders", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "tfa": True}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_state_changing_request_is_sent_to_the_challenge_with_next_as_the_prefix(
    make_harness: Callable[..., Any], method: str
) -> None:
    shop = Recorder(shop_app())
    harness = await make_harness(app=shop)
    response = await harness.client.request(
        method, "/admin/orders?delete=all", headers=harness.as_user("alice"), content=b"x=1"
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/_2fa/challenge?next=%2Fadmin"
    assert shop.scopes == []


async def test_post_from_a_json_caller_gets_401_with_next_as_the_prefix(harness: Harness) -> None:
    headers = {"x-test-user": "alice", "accept": "application/json"}
    response = await harness.client.post("/admin/orders", headers=headers, content=b"{}")
    assert response.status_code == 401
    assert response.json()["challenge_url"] == "/admin/_2fa/challenge?next=%2Fadmin"


async def test_head_keeps_its_path_as_next(harness: Harness) -> None:
    response = await asgi_request(
        harness.app, "/admin/orders", method="HEAD", headers=harness.as_user("alice")
    )
    assert response.status == 303
    assert response.header("location") == "/admin/_2fa/challenge?next=%2Fadmin%2Forders"


@pytest.mark.parametrize("path", ["/admin/orders", "/"])
async def test_lifespan_scope_reaches_the_app_untouched(make_harness: Callable[..., Any], path: str) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    harness = await make_harness(app=app)
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    if path != "/":
        scope["path"] = path  # a lifespan scope has no path; one here must not make it an HTTP request
    before = dict(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(f"the middleware answered a lifespan scope: {message}")

    await harness.app(scope, receive, send)
    assert len(seen) == 1
    assert seen[0][0] is scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert scope == before
