"""Step-up for sensitive paths (issue 17): a proof older than a rule's max_age_seconds (and any
proof no code was typed for) gets the challenge again as a re-check, then returns to the page (GET)
or to the page the form was on (a POST is never replayed); max_age_seconds 0 spends the proof on
one request. Paths are matched like path_prefix, on both readings; clock skew as the proof's own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.asgi_helpers import asgi_request
from tests.harness import ADMIN_PHONE, Harness, config
from tests.wsgi_harness import WSGIHarness
from tfa_middleware.errors import ConfigError
from tfa_middleware.policy import ONCE_SECONDS
from tfa_middleware.proof import CLOCK_SKEW_SECONDS
from tfa_middleware.settings import settings_from_mapping
from tfa_middleware.store import policy as policy_rows

RULES = [
    {"path": "/admin/settings/", "max_age_seconds": 300},
    {"path": "/admin/payments", "methods": ["POST"], "max_age_seconds": 0},
]


class Shop:
    """A shop that remembers every request it was handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def page(self, request: Request) -> PlainTextResponse:
        self.seen.append((request.method, request.url.path))
        return PlainTextResponse(f"shop {request.method} {request.url.path}")

    def app(self) -> Starlette:
        methods = ["GET", "POST"]
        return Starlette(
            routes=[
                Route("/admin", self.page),
                Route("/admin/orders", self.page, methods=methods),
                Route("/admin/settings/{rest:path}", self.page, methods=methods),
                Route("/admin/payments/{rest:path}", self.page, methods=methods),
                Route("/admin/payments", self.page, methods=methods),
            ]
        )


def interfaces(tmp_path: Path, **admin: Any) -> dict[str, Any]:
    found: dict[str, Any] = config(tmp_path)["interfaces"]
    found["admin"].update({"step_up": RULES, **admin})
    found["admin"]["exempt"] = [*found["admin"]["exempt"], "/admin/settings/public"]
    return found


@pytest.fixture
async def shop() -> Shop:
    return Shop()


@pytest.fixture
async def h(make_harness: Callable[..., Any], tmp_path: Path, shop: Shop) -> Harness:
    harness: Harness = await make_harness(shop.app(), interfaces=interfaces(tmp_path, remember_days=30))
    await harness.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    return harness


def alice() -> dict[str, str]:
    return {"x-test-user": "alice", "accept": "text/html"}


async def type_a_code(
    h: Harness, next_: str, *, reauth: bool = True, remember: bool = False
) -> httpx.Response:
    """The re-check's page, a texted code sent and typed: the answer that sets the new proof."""
    query = f"reauth=1&next={next_}" if reauth else f"next={next_}"
    page = await h.client.get(f"/admin/_2fa/challenge?{query}", headers=alice())
    assert page.status_code == 200, page.text[:300]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    data = {"csrf_token": token.group(1)}
    sent = await h.client.post(f"/admin/_2fa/send?{query}", data=data, headers=alice())
    assert sent.status_code == 303
    data["code"] = await h.latest_code()
    if remember:
        data["remember"] = "1"
    return await h.client.post(f"/admin/_2fa/verify?{query}", data=data, headers=alice())


def recheck_of(response: httpx.Response) -> str:
    """The ``next`` of a step-up's redirect to the re-check (which must say ``reauth``)."""
    assert response.status_code == 303, response.text[:300]
    location = urlsplit(response.headers["location"])
    assert location.path == "/admin/_2fa/challenge"
    query = parse_qs(location.query)
    assert query["reauth"] == ["1"]
    return query["next"][0]


async def test_a_young_proof_passes_an_old_one_is_rechecked_and_returns_to_the_page(
    h: Harness, shop: Shop
) -> None:
    await type_a_code(h, "/admin", reauth=False)
    assert (await h.client.get("/admin/settings/tax?tab=2", headers=alice())).status_code == 200

    h.clock.advance(301)
    stale = await h.client.get("/admin/settings/tax?tab=2", headers=alice())
    assert recheck_of(stale) == "/admin/settings/tax?tab=2"
    assert shop.seen == [("GET", "/admin/settings/tax")]  # the stale request never reached the shop
    # Elsewhere on the interface the 12-hour proof still holds.
    assert (await h.client.get("/admin/orders", headers=alice())).status_code == 200
    # The re-check shows its form though the proof is valid, and offers no "remember this browser".
    page = await h.client.get(stale.headers["location"], headers=alice())
    assert page.status_code == 200
    assert 'name="code"' in page.text
    assert 'name="remember"' not in page.text

    done = await type_a_code(h, "/admin/settings/tax%3Ftab%3D2")
    assert done.headers["location"] == "/admin/settings/tax?tab=2"
    again = await h.client.get("/admin/settings/tax?tab=2", headers=alice())
    assert again.status_code == 200
    assert again.text == "shop GET /admin/settings/tax"


async def test_the_age_limit_is_inclusive_and_a_proof_from_a_clock_ahead_counts_as_new(h: Harness) -> None:
    # Another worker whose clock runs ahead issued the proof: as young as the codec allows.
    h.clock.advance(CLOCK_SKEW_SECONDS - 1)
    await type_a_code(h, "/admin", reauth=False)
    h.clock.advance(-(CLOCK_SKEW_SECONDS - 1))
    assert (await h.client.get("/admin/settings/x", headers=alice())).status_code == 200
    h.clock.advance(300 + CLOCK_SKEW_SECONDS - 1)  # exactly 300 s after the proof's own time
    assert (await h.client.get("/admin/settings/x", headers=alice())).status_code == 200
    h.clock.advance(1)
    recheck_of(await h.client.get("/admin/settings/x", headers=alice()))


async def test_a_post_is_never_replayed_and_returns_to_the_page_it_came_from(h: Harness, shop: Shop) -> None:
    await type_a_code(h, "/admin", reauth=False)
    h.clock.advance(400)
    form_page = "http://shop.test/admin/settings/tax?tab=2"
    headers = {**alice(), "referer": form_page}
    stale = await h.client.post("/admin/settings/tax", data={"rate": "20"}, headers=headers)
    assert recheck_of(stale) == "/admin/settings/tax?tab=2"
    # A Referer from another site, or outside the interface, is not followed: the front page.
    for referer in ("https://evil.test/admin/settings/x", "http://shop.test/account/orders"):
        other = await h.client.post("/admin/settings/tax", headers={**alice(), "referer": referer})
        assert recheck_of(other) == "/admin"
    # fetch/XHR: 401 with the re-check's URL, as the middleware answers them without a proof.
    api = await h.client.post(
        "/admin/settings/tax",
        headers={"x-test-user": "alice", "accept": "application/json", "referer": form_page},
    )
    assert api.status_code == 401
    assert api.json()["error"] == "second_factor_required"
    assert "reauth=1" in api.json()["challenge_url"]
    assert not [seen for seen in shop.seen if seen[0] == "POST"]

    done = await type_a_code(h, "/admin/settings/tax%3Ftab%3D2")
    assert done.headers["location"] == "/admin/settings/tax?tab=2"  # back to the form: a GET
    assert not [seen for seen in shop.seen if seen[0] == "POST"]
    posted = await h.client.post("/admin/settings/tax", data={"rate": "20"}, headers=headers)
    assert posted.status_code == 200
    assert shop.seen[-1] == ("POST", "/admin/settings/tax")


async def test_a_remembered_browser_never_meets_a_rule(h: Harness) -> None:
    done = await type_a_code(h, "/admin", reauth=False, remember=True)
    assert "tfa_admin_remember" in done.cookies
    h.clock.advance(13 * 3600)  # the proof is gone; the remembered browser brings a new one
    recalled = await h.client.get("/admin/_2fa/challenge?next=/admin/orders", headers=alice())
    assert recalled.status_code == 303
    assert (await h.client.get("/admin/orders", headers=alice())).status_code == 200
    # Brand new, but no code was typed for it: the rule wants one.
    assert recheck_of(await h.client.get("/admin/settings/x", headers=alice())) == "/admin/settings/x"
    recheck = await h.client.get("/admin/_2fa/challenge?reauth=1&next=/admin/settings/x", headers=alice())
    assert recheck.status_code == 200  # the remembered browser does not pass the re-check either
    assert 'name="code"' in recheck.text


async def test_max_age_zero_spends_the_proof_on_one_request(h: Harness, shop: Shop) -> None:
    await type_a_code(h, "/admin", reauth=False)
    # GET is not named by the rule: the proof passes; POST spends it.
    assert (await h.client.get("/admin/payments/new", headers=alice())).status_code == 200
    assert (await h.client.post("/admin/payments/new", headers=alice())).status_code == 200
    again = await h.client.post(
        "/admin/payments/new", headers={**alice(), "referer": "http://shop.test/admin/payments/new"}
    )
    assert recheck_of(again) == "/admin/payments/new"
    assert shop.seen.count(("POST", "/admin/payments/new")) == 1

    h.clock.advance(1)  # a proof's time is in whole seconds: the new one differs from the spent one
    await type_a_code(h, "/admin/payments/new")
    assert (await h.client.post("/admin/payments/new", headers=alice())).status_code == 200
    assert shop.seen.count(("POST", "/admin/payments/new")) == 2

    # A code typed longer than ONCE_SECONDS ago is no code for this request, spent or not.
    h.clock.advance(1)
    await type_a_code(h, "/admin/payments/new")
    h.clock.advance(ONCE_SECONDS + 1)
    recheck_of(await h.client.post("/admin/payments", headers=alice()))


async def test_max_age_zero_admits_one_of_many_parallel_requests(h: Harness, shop: Shop) -> None:
    await type_a_code(h, "/admin", reauth=False)
    answers = await asyncio.gather(*(h.client.post("/admin/payments/x", headers=alice()) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [200] + [303] * 9
    assert shop.seen == [("POST", "/admin/payments/x")]


async def test_spending_is_exact_on_the_database(store: Any) -> None:
    """One INSERT … ON CONFLICT DO NOTHING decides: of parallel spends of one proof, one wins."""
    results = await asyncio.gather(
        *(policy_rows.spend(store, "d" * 64, "admin", "alice", 1.0) for _ in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    assert await policy_rows.spend(store, "e" * 64, "admin", "alice", 1.0)


async def test_rules_hold_every_reading_of_a_path_and_exempt_paths_stay_open(h: Harness) -> None:
    await type_a_code(h, "/admin", reauth=False)
    h.clock.advance(301)
    headers = {**alice(), "cookie": f"tfa_admin={h.client.cookies['tfa_admin']}"}
    for path in ("/ADMIN/Settings/x", "/admin/settings", "/admin//settings/x", "/admin/orders/../settings/x"):
        answer = await asgi_request(h.app, path, headers=headers)
        assert answer.status == 303, path
        assert "reauth=1" in (answer.header("location") or "")
    assert (await asgi_request(h.app, "/admin/orders", headers=headers)).status == 200
    # An exempt path below a rule: nobody is asked anything there.
    assert (await asgi_request(h.app, "/admin/settings/public", headers=headers)).status == 200
    # A path the rule does not hold (a longer name, not below it): the old proof passes.
    assert (await asgi_request(h.app, "/admin/settings-archive", headers=headers)).status == 404


async def test_report_mode_stops_nobody_for_a_rule_and_records_it(
    make_harness: Callable[..., Any], tmp_path: Path, shop: Shop
) -> None:
    h: Harness = await make_harness(shop.app(), interfaces=interfaces(tmp_path, mode="report"))
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    await type_a_code(h, "/admin", reauth=False)
    h.clock.advance(301)
    for _ in range(3):
        assert (await h.client.get("/admin/settings/x", headers=alice())).status_code == 200
    assert await h.service.rollout.reported("admin", 1) == [("alice", "2027-01-15", "step_up")]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            [
                {"path": "/shop/settings", "max_age_seconds": 60},
                {"path": "/admin/_2fa/x", "max_age_seconds": 60},
            ],
            [
                "interfaces.admin.step_up[0].path: '/shop/settings' is outside path_prefix '/admin': "
                "a rule protects only its own interface",
                "interfaces.admin.step_up[1].path: '/admin/_2fa/x' overlaps pages_path '/admin/_2fa': "
                "the challenge itself must stay reachable",
            ],
        ),
        (
            [
                {"path": "/admin/x", "methods": ["POST", "FETCH"], "max_age_seconds": 60},
                {"path": "/admin/y", "max_age_seconds": -1},
                {"path": "/admin/z"},
                {"path": "admin", "max_age_seconds": 1},
            ],
            [
                "interfaces.admin.step_up[0].methods: unknown method 'FETCH' "
                "(one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)",
                "interfaces.admin.step_up[1].max_age_seconds: must be between 0 and 2592000, got -1",
                "interfaces.admin.step_up[2].max_age_seconds: is required",
            ],
        ),
        (
            [{"path": "admin", "max_age_seconds": 1}],
            ["interfaces.admin.step_up[0].path: must start with '/'"],
        ),
    ],
)
def test_rules_are_checked_with_their_key_paths(tmp_path: Path, rules: Any, expected: list[str]) -> None:
    data = config(tmp_path)
    data["interfaces"]["admin"]["step_up"] = rules
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert exc.value.problems == expected


def test_the_wsgi_middleware_rechecks_the_same_way(
    make_wsgi: Callable[..., WSGIHarness], tmp_path: Path
) -> None:
    w = make_wsgi(interfaces=interfaces(tmp_path))
    w.run(w.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True))
    sent = w.send(alice())
    assert sent.status_code == 303
    done = w.verify(alice(), w.latest_code())
    assert done.status_code == 303
    assert w.client.get("/admin/settings/x", headers=alice()).status_code == 200
    w.clock.advance(301)
    assert recheck_of(w.client.get("/admin/settings/x?a=1", headers=alice())) == "/admin/settings/x?a=1"
    posted = w.client.post(
        "/admin/settings/x", headers={**alice(), "referer": "http://shop.test/admin/settings/x"}
    )
    assert recheck_of(posted) == "/admin/settings/x"
    assert w.client.get("/admin/orders", headers=alice()).status_code == 200
