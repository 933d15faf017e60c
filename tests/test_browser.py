"""The pages in a real browser: Playwright driving Chromium against the demo shop under uvicorn.

Every flow is done with the keyboard alone (Tab, Shift+Tab, typing, Enter), at a desktop width and
at 375 px, and every page it meets goes through :meth:`Visit.check`: a screenshot in
``test-artifacts/``, no sideways scrolling, and, on the middleware's own pages, one ``h1``, a label
for every field, errors announced and tied to their field, a visible focus ring, axe-core with no
serious or critical violation, and HTML + CSS + JS under 30 KB. Each browser context records its
requests, and a test fails if one of them leaves the demo's origin.

Needs Chromium (``TFA_CHROMIUM``, default /usr/bin/chromium) and Playwright. Without them the tests
skip with the reason; ``TFA_REQUIRE_BROWSER=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.codes import other_code
from tests.demo import DEMO_CONFIG, Demo, demo_server
from tests.helpers import Cli

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Response

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
WIDTHS = {"desktop": 1280, "phone": 375}
MAX_PAGE_BYTES = 30 * 1024
# The pages' clock in the countdown test: starts at an arbitrary moment; paused, the test moves it.
PAGE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# The limits of a browser test that is not about the growing delay: no wait between two tries.
NO_DELAY = {"limits": {"verify_delay_base_seconds": 0}}
# The package's own look: no branding, no template override.
PLAIN = {"branding": None, "templates_dir": None}
# uvicorn --factory cannot pass the factory an argument; this does, so a test can use its own file.
LOGO_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40">'
    b'<rect width="40" height="40" rx="8" fill="#8a1c7c"/><text x="48" y="27" font-size="18" '
    b'font-family="sans-serif" fill="#1d2330">Acme</text></svg>'
)

# What the checks measured, written to test-artifacts/browser-report.json at the end of the module.
REPORT: dict[str, dict[str, Any]] = {"weights": {}, "axe": {}}


# ---------------------------------------------------------------------------- the browser


def _chromium() -> str:
    path = os.environ.get("TFA_CHROMIUM", "/usr/bin/chromium")
    missing = None
    if not (shutil.which(path) or Path(path).is_file()):
        missing = f"no Chromium at {path} (apt-get install chromium, or set TFA_CHROMIUM)"
    else:
        try:
            import axe_playwright_python  # noqa: F401
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            missing = f"{exc.name} is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("TFA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TFA_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-report.json").write_text(json.dumps(REPORT, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------- the demo server


@pytest.fixture
def start_demo(tmp_path: Path, cli: Cli) -> Iterator[Callable[..., Demo]]:
    """Start the demo shop under uvicorn with demo_app/config.yaml, changed by ``changes``
    (a top-level key set to None is removed). A fresh database each time."""
    numbers = itertools.count()
    with ExitStack() as servers:

        def start(port: int | None = None, **changes: Any) -> Demo:
            folder = tmp_path / f"demo-{next(numbers)}"
            folder.mkdir()
            return servers.enter_context(demo_server(folder, cli, changes, port=port))

        yield start


# ---------------------------------------------------------------------------- one visit


@dataclass
class Visit:
    """One browser context on the demo: its page, the requests it made, and the checks of each page."""

    name: str
    demo: Demo
    context: BrowserContext
    page: Page
    js: bool
    width: int
    requests: list[str] = field(default_factory=list)
    documents: list[Response] = field(default_factory=list)
    step: int = 0

    def goto(self, path: str) -> Response | None:
        return self.page.goto(self.demo.url + path)

    def check(self, what: str) -> None:
        """Screenshot the page and check everything every page must be."""
        from axe_playwright_python.sync_playwright import Axe

        self.step += 1
        label = f"{self.name}-{self.step:02d}-{what}"
        page = self.page
        page.screenshot(path=ARTIFACTS / f"{label}.png", full_page=True)
        sideways = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert sideways <= 0, f"{label}: the page scrolls sideways by {sideways} px at {self.width} px"
        if "/_2fa/" not in urlsplit(page.url).path:
            return  # the shop's own page: its markup is the shop's business
        assert page.locator("h1").count() == 1, f"{label}: not exactly one h1"
        problems = page.evaluate(
            """() => {
              const out = [];
              for (const input of document.querySelectorAll("input:not([type=hidden])")) {
                if (!input.labels.length) out.push(`no label for ${input.name}`);
                if (input.getAttribute("aria-invalid") === "true") {
                  const ids = (input.getAttribute("aria-describedby") || "").split(/\\s+/).filter(Boolean);
                  const linked = ids.map((id) => document.getElementById(id)).filter(Boolean);
                  if (!linked.some((el) => el.getAttribute("role") === "alert"))
                    out.push(`${input.name} is invalid but not described by an alert`);
                }
              }
              for (const error of document.querySelectorAll(".error"))
                if (error.getAttribute("role") !== "alert") out.push(`no role=alert: ${error.textContent}`);
              return out;
            }"""
        )
        assert not problems, f"{label}: {problems}"
        focused = page.evaluate("document.activeElement && document.activeElement.id")
        if focused:
            _assert_focus_visible(page.locator(f"#{focused}"))
        # axe.run() waits on timers, which never fire with JavaScript off; the markup is the same.
        if self.js:
            results = Axe().run(page)
            violations = results.response["violations"]
            REPORT["axe"][label] = {v["id"]: v["impact"] for v in violations}
            serious = [v for v in violations if v["impact"] in ("serious", "critical")]
            assert not serious, f"{label}: {results.generate_report()}"
        self._check_weight(label)

    def _check_weight(self, label: str) -> None:
        assert self.documents, "no document loaded"
        html = len(self.documents[-1].body())
        styles = self.page.eval_on_selector_all("link[rel=stylesheet]", "els => els.map((e) => e.href)")
        scripts = self.page.eval_on_selector_all("script", "els => els.map((e) => e.src)")
        pages_path = urlsplit(self.page.url).path.rsplit("/", 1)[0]
        own = {
            f"{self.demo.url}{pages_path}/static/{name}"
            for name in ("tfa.css", "brand.css", "tfa.js", "passkeys.js")
        }
        assert set(styles + scripts) <= own, (
            f"{label}: a script or stylesheet of someone else's: {styles + scripts}"
        )
        sizes = {}
        for url in styles + scripts:
            response = self.context.request.get(url)
            assert response.ok, url
            sizes[url.rsplit("/", 1)[1]] = len(response.body())
            response.dispose()
        total = html + sum(sizes.values())
        REPORT["weights"][label] = {"html": html, **sizes, "total": total}
        assert total < MAX_PAGE_BYTES, f"{label}: {total} bytes of HTML, CSS and JS ({sizes}, html {html})"

    def assert_only_the_demo_was_asked(self) -> None:
        """No font, CDN or anything else: every request the pages made went to the demo."""
        origin = urlsplit(self.demo.url).netloc
        elsewhere = [u for u in self.requests if urlsplit(u).netloc != origin]
        assert self.requests, "the browser made no request at all"
        assert not elsewhere, f"requests outside the demo: {elsewhere}"


def _assert_focus_visible(target: Locator) -> None:
    outline = target.evaluate(
        "el => { const s = getComputedStyle(el); return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert outline[0] != "none", f"no visible focus ring: {outline}"
    assert float(outline[1].rstrip("px")) >= 2, f"no visible focus ring: {outline}"


@pytest.fixture
def visit(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Visit]]:
    """Open a browser context on a demo: ``visit(demo, width, js=True, name="")``; the name tells
    the screenshots of a second context in one test apart."""
    made: list[Visit] = []

    def open_visit(
        demo: Demo, width: int, *, js: bool = True, name: str = "", locale: str | None = None
    ) -> Visit:
        # ``locale`` is the browser's language: its Accept-Language, navigator.language.
        context = browser.new_context(
            viewport={"width": width, "height": 800}, java_script_enabled=js, locale=locale
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        label = re.sub(r"[^A-Za-z0-9]+", "-", f"{request.node.name.removeprefix('test_')}-{name}").strip("-")
        made_visit = Visit(label, demo, context, page, js, width)

        def on_response(response: Response) -> None:
            if response.request.resource_type == "document" and response.frame == page.main_frame:
                made_visit.documents.append(response)

        context.on("request", lambda r: made_visit.requests.append(r.url))
        page.on("response", on_response)
        made.append(made_visit)
        return made_visit

    ARTIFACTS.mkdir(exist_ok=True)
    yield open_visit
    for v in made:
        v.context.close()
        v.assert_only_the_demo_was_asked()


# ---------------------------------------------------------------------------- the keyboard


def tab_to(v: Visit, target: Locator, *, backwards: bool = False, limit: int = 20) -> None:
    """Press Tab (Shift+Tab) until ``target`` has the focus, and check that the focus shows."""
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            _assert_focus_visible(target)
            return
        v.page.keyboard.press("Shift+Tab" if backwards else "Tab")
    pytest.fail(f"{limit} presses of {'Shift+' if backwards else ''}Tab never reached {target}")


def log_in(v: Visit, email: str, password: str, *, admin: bool = True) -> None:
    """The shop's own log-in form, by keyboard: its e-mail field has the focus on load."""
    from playwright.sync_api import expect

    v.goto("/admin/login" if admin else "/login")
    expect(v.page.locator("#email")).to_be_focused()
    v.check("shop-login")
    v.page.keyboard.type(email)
    v.page.keyboard.press("Tab")
    v.page.keyboard.type(password)
    v.page.keyboard.press("Enter")


def text_me_a_code(v: Visit, masked: str) -> None:
    """From the challenge page (the code field focused), back to "Text me a code" and press it."""
    from playwright.sync_api import expect

    page = v.page
    expect(page.locator("h1")).to_have_text("Enter your code")
    expect(page.locator("#code")).to_be_focused()
    v.check("challenge")
    tab_to(v, page.get_by_role("button", name="Text me a code"), backwards=True)
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(f"We sent a code to {masked}.")
    expect(page.locator("#code")).to_be_focused()
    v.check("code-sent")


def type_code(v: Visit, code: str) -> None:
    """Type a code into the focused code field: the page sends it at the last digit, or, without
    JavaScript, Enter does. Returns when the answer has loaded (it may look like the page before)."""
    from playwright.sync_api import expect

    expect(v.page.locator("#code")).to_be_focused()
    with v.page.expect_navigation():
        v.page.keyboard.type(code)
        if not v.js:
            v.page.keyboard.press("Enter")


def sign_in(v: Visit) -> None:
    """The admin, all the way to the orders."""
    from playwright.sync_api import expect

    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, v.demo.latest_code("1"))
    expect(v.page.locator("h1")).to_have_text("Orders")


def _url_path(v: Visit) -> str:
    parts = urlsplit(v.page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# ---------------------------------------------------------------------------- the flows

WIDTH_IDS = list(WIDTHS)
WIDTH_AND_JS = [
    pytest.param(width, js, id=f"{width}{'' if js else '-nojs'}") for js in (True, False) for width in WIDTHS
]


@pytest.mark.parametrize(("width", "js"), WIDTH_AND_JS)
def test_admin_signs_in_with_a_texted_code(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str, js: bool
) -> None:
    """The README's walk-through, with demo_app/config.yaml as it is: default limits, branding,
    the template override."""
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width], js=js)
    log_in(v, "admin@example.com", "admin")
    expect(v.page).to_have_url(re.compile(r"/admin/_2fa/challenge\?next=%2Fadmin$"))
    expect(v.page.get_by_role("contentinfo")).to_contain_text("tfa-middleware outbox")  # the override
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, v.demo.latest_code("1"))
    expect(v.page.locator("h1")).to_have_text("Orders")
    assert _url_path(v) == "/admin"
    v.check("orders")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_customer_signs_in_on_the_account_page(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width])
    log_in(v, "customer@example.com", "customer", admin=False)
    expect(v.page).to_have_url(re.compile(r"/account/_2fa/challenge\?next=%2Faccount$"))
    text_me_a_code(v, "+1 ••• ••• 0145")
    type_code(v, v.demo.latest_code("3"))
    expect(v.page.locator("h1")).to_have_text("Hello, Carla Customer")
    assert _url_path(v) == "/account"
    v.check("account")


@pytest.mark.parametrize(("width", "js"), WIDTH_AND_JS)
def test_vendor_without_a_phone_enrolls_one(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str, js: bool
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width], js=js)
    page = v.page
    log_in(v, "vendor@example.com", "vendor")
    expect(page.locator("h1")).to_have_text("Set up two-step verification")
    assert urlsplit(page.url).path == "/admin/_2fa/enroll"
    v.check("enroll")
    expect(page.get_by_label("Country code")).to_be_focused()
    page.keyboard.type("+1")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Mobile number")).to_be_focused()
    page.keyboard.type("201 555 0199")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=2).first).to_have_text("Confirm +1 ••• ••• 0199")
    expect(page.get_by_role("status")).to_have_text("We sent a code to +1 ••• ••• 0199.")
    v.check("enroll-code-sent")
    type_code(v, v.demo.latest_code("2"))
    expect(page.locator("h1")).to_have_text("Orders")
    assert _url_path(v) == "/admin"
    v.check("orders")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_a_wrong_code_shows_the_error_at_the_field(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(**NO_DELAY), WIDTHS[width])
    page = v.page
    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, other_code(v.demo.latest_code("1")))
    error = page.get_by_role("alert")
    expect(error).to_have_text(re.compile(r"^That code didn't work\."))
    field = page.locator("#code")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", "code-error")
    expect(error).to_have_id("code-error")
    expect(field).to_be_focused()
    expect(field).to_have_value("")
    v.check("wrong-code")
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Orders")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_enter_after_the_last_digit_sends_the_code_once(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """The page sends the form at the last digit; a user who presses Enter as well must not send
    it a second time, or the page shows the second answer ("Please wait ...") instead of the first."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Route, expect

    demo = start_demo()
    v = visit(demo, WIDTHS[width])
    page = v.page
    posts: list[str] = []
    v.context.on("request", lambda r: posts.append(urlsplit(r.url).path) if r.method == "POST" else None)
    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    expect(page.locator("#code")).to_be_focused()
    # A slow network, made certain: the code's request is held until Enter has been pressed, as
    # when the answer takes a moment. A second request, if the page sends one, is held too.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/admin/_2fa/verify*", hold)
    page.keyboard.type(demo.latest_code("1"))
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)  # time for a second request to be made, were there one
    for route in held:
        with suppress(PlaywrightError):  # one the browser gave up for a later one
            route.continue_()
    # Wherever the answer is (the orders, or the challenge page shown again by the verify
    # request), it has loaded; then count what was sent.
    page.wait_for_url(re.compile(r"/admin(/_2fa/verify\?.*)?$"))
    page.wait_for_load_state()
    assert posts.count("/admin/_2fa/verify") == 1, posts
    expect(page.locator("h1")).to_have_text("Orders")
    log = (demo.database.parent / "uvicorn.log").read_text()
    assert log.count('"POST /admin/_2fa/verify') == 1, log
    v.check("orders")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_the_growing_delay_after_a_wrong_code_is_shown(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """A 30-second first delay, so that the second try is surely inside it: no timing luck."""
    from playwright.sync_api import expect

    v = visit(start_demo(limits={"verify_delay_base_seconds": 30}), WIDTHS[width])
    page = v.page
    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, other_code(v.demo.latest_code("1")))
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^That code didn't work\."))
    type_code(v, v.demo.latest_code("1"))
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^Please wait (29|30) seconds before trying again\.$")
    )
    expect(page.locator("h1")).to_have_text("Enter your code")
    v.check("wait")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_the_lock_says_when_to_try_again(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(**NO_DELAY), WIDTHS[width])
    page = v.page
    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    wrong = other_code(v.demo.latest_code("1"))
    for _ in range(4):
        type_code(v, wrong)
        expect(page.get_by_role("alert")).to_have_text(re.compile(r"^That code didn't work\."))
    type_code(v, wrong)
    locked = re.compile(r"^Too many wrong codes\. .* for 15 minutes\. If this wasn't you")
    expect(page.get_by_role("alert")).to_have_text(locked)
    v.check("locked")
    # Coming back later still says so, and even the right code is not checked.
    v.goto("/admin")
    expect(page.get_by_role("alert")).to_have_text(locked)
    expect(page.locator("#code")).to_have_attribute("aria-describedby", "locked")
    v.check("locked-later")
    type_code(v, v.demo.latest_code("1"))
    expect(page.get_by_role("alert")).to_have_text(locked)
    expect(page.locator("h1")).to_have_text("Enter your code")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_resend_counts_down_the_cooldown(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """The countdown runs on Playwright's fake clock, paused from the moment the code is asked
    for: the page's seconds pass only when the test says so (a loaded machine's real seconds never
    reach the page), 30 of them in no time. axe needs running timers: the clock resumes for it."""
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width])
    page = v.page
    page.clock.install(time=PAGE_TIME)
    log_in(v, "admin@example.com", "admin")
    expect(page.locator("h1")).to_have_text("Enter your code")
    v.check("challenge")
    tab_to(v, page.get_by_role("button", name="Text me a code"), backwards=True)
    page.clock.pause_at(PAGE_TIME + timedelta(hours=1))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("We sent a code to +1 ••• ••• 0123.")
    again = page.get_by_role("button", name="Text me a new code")
    wait = page.locator("#send-again-wait")
    expect(wait).to_have_text(re.compile(r"^You can ask for a new code in 30 seconds\.$"))
    expect(again).to_be_disabled()
    expect(again).to_have_attribute("aria-describedby", "send-again-wait")
    page.clock.run_for(2_000)
    expect(wait).to_have_text(re.compile(r"^You can ask for a new code in 28 seconds\.$"))
    page.clock.run_for(30_000)
    expect(wait).to_have_text("You can ask for a new code now.")
    expect(again).to_be_enabled()
    page.clock.resume()
    v.check("cooldown-over")
    # The page's clock is not the server's: pressed now, the server still says how long to wait.
    tab_to(v, again)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^You can ask for a new code in \d+ seconds\.$")
    )
    v.check("resend-refused")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_resend_without_javascript_says_how_long_to_wait(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width], js=False)
    page = v.page
    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    expect(page.locator("#send-again-wait")).to_have_text(
        re.compile(r"^You can ask for a new code in (29|30) seconds\.$")
    )
    again = page.get_by_role("button", name="Text me a new code")
    tab_to(v, again)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^You can ask for a new code in \d+ seconds\.$")
    )
    v.check("resend-refused")
    # Still a working page: the code that was sent lets the user in.
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Orders")


@pytest.mark.parametrize(("width", "js"), WIDTH_AND_JS)
def test_logout_of_the_second_factor_returns_to_the_challenge(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str, js: bool
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width], js=js)
    page = v.page
    sign_in(v)
    v.goto("/admin/_2fa/logout?next=/admin/users")
    expect(page.locator("h1")).to_have_text("Sign out of two-step verification")
    v.check("logout")
    tab_to(v, page.get_by_role("button", name="Sign out"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Enter your code")
    assert _url_path(v) == "/admin/_2fa/challenge?next=%2Fadmin%2Fusers"
    v.check("signed-out")
    v.goto("/admin")
    expect(page.locator("h1")).to_have_text("Enter your code")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_the_deep_link_survives_the_challenge(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(**NO_DELAY), WIDTHS[width])
    page = v.page
    log_in(v, "admin@example.com", "admin")
    expect(page.locator("h1")).to_have_text("Enter your code")
    v.goto("/admin/users")
    expect(page).to_have_url(re.compile(r"/admin/_2fa/challenge\?next=%2Fadmin%2Fusers$"))
    text_me_a_code(v, "+1 ••• ••• 0123")
    assert "next=%2Fadmin%2Fusers" in page.url
    type_code(v, other_code(v.demo.latest_code("1")))
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^That code didn't work\."))
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Users")
    assert _url_path(v) == "/admin/users"
    v.check("users")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_the_built_in_pages_without_branding(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """The package as it ships, with no branding or override: every kind of page it has."""
    from playwright.sync_api import expect

    v = visit(start_demo(**PLAIN, **NO_DELAY), WIDTHS[width])
    page = v.page
    log_in(v, "admin@example.com", "admin")
    expect(page.locator("header")).to_have_count(0)
    expect(page.locator("footer")).to_have_count(0)
    expect(page).to_have_title("Enter your code · Two-step verification")
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, other_code(v.demo.latest_code("1")))
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^That code didn't work\."))
    v.check("wrong-code")
    missing = v.goto("/admin/_2fa/nothing-here")
    assert missing is not None
    assert missing.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    v.check("not-found")
    v.goto("/admin/_2fa/logout")
    v.check("logout")
    vendor = visit(v.demo, WIDTHS[width], name="vendor")
    log_in(vendor, "vendor@example.com", "vendor")
    expect(vendor.page.locator("h1")).to_have_text("Set up two-step verification")
    vendor.check("enroll")
    expect(vendor.page.get_by_label("Country code")).to_be_focused()
    vendor.page.keyboard.type("+1")
    vendor.page.keyboard.press("Tab")
    vendor.page.keyboard.type("12")
    vendor.page.keyboard.press("Enter")
    error = vendor.page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(vendor.page.get_by_label("Mobile number")).to_have_attribute("aria-invalid", "true")
    vendor.check("enroll-bad-number")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_branding_from_the_settings(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """Title, logo and colour from YAML alone; the colour reaches the CSS without inline styles."""
    from playwright.sync_api import Route, expect

    branding = {"title": "Acme Outfitters", "logo_url": "/brand/logo.svg", "primary_color": "#8A1C7C"}
    v = visit(start_demo(branding=branding, templates_dir=None), WIDTHS[width])
    page = v.page

    def logo(route: Route) -> None:  # the shop would serve its logo; the demo has none
        route.fulfill(body=LOGO_SVG, content_type="image/svg+xml")

    page.route(f"{v.demo.url}/brand/logo.svg", logo)
    log_in(v, "admin@example.com", "admin")
    expect(page).to_have_title("Enter your code · Two-step verification · Acme Outfitters")
    expect(page.get_by_role("banner").get_by_role("img", name="Acme Outfitters")).to_be_visible()
    assert page.locator("header img").evaluate("img => img.naturalWidth") == 120
    send = page.get_by_role("button", name="Text me a code")
    expect(send).to_have_css("background-color", "rgb(138, 28, 124)")
    v.check("challenge")
    assert f"{v.demo.url}/admin/_2fa/static/brand.css" in v.requests
    tab_to(v, send, backwards=True)
    expect(send).to_have_css("outline-color", "rgb(138, 28, 124)")


@pytest.mark.parametrize(("width", "js"), WIDTH_AND_JS)
def test_admin_changes_the_phone(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str, js: bool
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width], js=js)
    page = v.page
    sign_in(v)
    # The resend cooldown counts per account, whatever the number: a new number within 30 s of
    # the sign-in code would be refused. Someone reading a text and typing takes about that long.
    v.demo.age_the_sends(60)
    v.goto("/admin/_2fa/phone")
    expect(page.locator("h1")).to_have_text("Your phone for sign-in codes")
    v.check("phone")
    tab_to(v, page.get_by_label("Country code"), backwards=True)
    page.keyboard.type("+1")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Mobile number")).to_be_focused()
    page.keyboard.type("201 555 0177")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("We sent a code to +1 ••• ••• 0177.")
    v.check("phone-code-sent")
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("main")).to_contain_text("Codes now go to +1 ••• ••• 0177.")
    v.check("phone-changed")
    # The change revoked every earlier proof; this browser got a new one and goes on.
    v.goto("/admin")
    expect(page.locator("h1")).to_have_text("Orders")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_the_management_page(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width])
    sign_in(v)
    v.goto("/admin/_2fa/manage")
    expect(v.page.locator("h1")).to_have_text("Second factors")
    v.check("manage")
    # The traffic chart (issue 20): drawn, this hour's send and verify (sign_in's) as a solid and
    # a hatched bar above the axis; the chart scrolls inside its own box
    # at 375 px (check() has seen the page itself not scroll sideways), and its box can be focused.
    chart = v.page.locator(".traffic .chart svg")
    expect(chart).to_be_visible()
    for series in ("sent", "verified"):
        bars = chart.locator(f"path.{series}")
        assert (bars.get_attribute("d") or "").count("M") == 1, series  # this hour's bar alone
        drawn = bars.bounding_box()
        assert drawn is not None, series
        assert drawn["height"] > 0, series
    box = v.page.locator(".traffic .chart")
    assert box.get_attribute("tabindex") == "0"
    inside = box.evaluate("e => e.scrollWidth - e.clientWidth")
    assert (inside > 0) == (WIDTHS[width] < 1000), inside
    expect(v.page.get_by_role("img", name=re.compile("Codes sent and verifies per hour"))).to_be_visible()
    expect(v.page.locator("table caption")).to_have_text("Codes sent and verifies per hour (UTC)")
    v.page.screenshot(path=str(ARTIFACTS / f"manage-traffic-{width}.png"), full_page=True)


BROKEN_PAGES = {
    "two-h1": ("<h1>One</h1><h1>Two</h1>", "not exactly one h1"),
    "no-label": ("<h1>Code</h1><input id=c name=c>", "no label for c"),
    "error-not-announced": ('<h1>Code</h1><p class="error">Wrong code.</p>', "no role=alert: Wrong code."),
    "invalid-not-linked": (
        "<h1>Code</h1><label for=c>Code</label><input id=c name=c aria-invalid=true>",
        "c is invalid but not described by an alert",
    ),
    "no-focus-ring": (
        "<style>:focus { outline: none }</style><h1>Code</h1><label for=c>Code</label><input id=c autofocus>",
        "no visible focus ring",
    ),
    "sideways": ('<h1>Code</h1><div style="width: 500px">wide</div>', "the page scrolls sideways by"),
    "low-contrast": ('<h1>Code</h1><p style="color: #bbb">Faint</p>', "color-contrast"),
    "heavy": ("<h1>Code</h1><p>" + "words " * 6000 + "</p>", "bytes of HTML, CSS and JS"),
    "font-from-a-cdn": (
        '<h1>Code</h1><link rel="preload" as="font" href="https://fonts.example/x.woff2" crossorigin>',
        "requests outside the demo: ['https://fonts.example/x.woff2']",
    ),
    "foreign-script": (
        '<h1>Code</h1><script src="/static/app.js"></script>',
        "a script or stylesheet of someone else's",
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN_PAGES))
def test_the_page_checks_fail_on_a_broken_page(
    visit: Callable[..., Visit], tmp_path: Path, cli: Cli, kind: str
) -> None:
    """Each check of Visit.check catches what it is there for: a check that cannot fail proves nothing."""
    from playwright.sync_api import Route

    body, complaint = BROKEN_PAGES[kind]
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Broken</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><main>{body}</main></body></html>"
    )
    v = visit(Demo("http://127.0.0.1:9", tmp_path / "unused.sqlite3", DEMO_CONFIG, cli), WIDTHS["phone"])

    def serve(route: Route) -> None:  # nothing listens on port 9: every request is answered here
        route.fulfill(
            body=html if route.request.resource_type == "document" else "", content_type="text/html"
        )

    v.page.route("**/*", serve)
    v.goto("/admin/_2fa/broken")

    def every_check() -> None:
        v.check(kind)
        v.assert_only_the_demo_was_asked()

    with pytest.raises(AssertionError, match=re.escape(complaint)):
        every_check()
    v.requests = [u for u in v.requests if u.startswith(v.demo.url)]  # so that the teardown passes
    for measured in REPORT.values():  # the report is about the real pages
        for label in [label for label in measured if label.startswith(v.name)]:
            del measured[label]


# ---------------------------------------------------------------------------- more factors (issue 15)


def _demo_interfaces(**admin: Any) -> dict[str, Any]:
    """demo_app/config.yaml's interfaces, with ``admin`` keys added to the admin interface."""
    import yaml

    interfaces: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text())["interfaces"]
    interfaces["admin"].update(admin)
    return interfaces


def app_code_now(secret: str, steps: int = 0) -> str:
    """What the app shows now (``steps`` later): the demo checks codes by the real clock."""
    import time

    import pyotp

    return pyotp.TOTP(secret).at(time.time(), counter_offset=steps)


def sign_out_of_the_second_factor(v: Visit) -> None:
    from playwright.sync_api import expect

    v.goto("/admin/_2fa/logout")
    tab_to(v, v.page.get_by_role("button", name="Sign out"))
    v.page.keyboard.press("Enter")
    expect(v.page.locator("h1")).not_to_have_text("Sign out of two-step verification")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_admin_sets_up_an_authenticator_app_and_signs_in_with_it(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """The QR code's secret read from the page, as a person would type it into an app; the code
    computed from it now. The app comes first at the next sign-in."""
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width])
    page = v.page
    sign_in(v)
    v.goto("/admin/_2fa/account")
    expect(page.locator("h1")).to_have_text("Your sign-in methods")
    v.check("account")
    tab_to(v, page.get_by_role("button", name="Add an authenticator app"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Set up your authenticator app")
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    v.check("app-setup")
    secret = page.locator("#secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    type_code(v, app_code_now(secret))
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Your authenticator app is set up"))
    expect(page.locator("main")).not_to_contain_text(secret[:8])
    v.check("app-added")
    sign_out_of_the_second_factor(v)
    expect(page.locator("h1")).to_have_text("Enter your code")
    expect(page.locator("main")).to_contain_text("your authenticator app shows now")
    expect(page.get_by_role("link", name="Text a code to +1 ••• ••• 0123")).to_be_visible()
    v.check("challenge-app")
    # The step of the confirmation is spent: the app's next code (one step ahead is allowed).
    type_code(v, app_code_now(secret, 1))
    expect(page.locator("h1")).to_have_text("Orders")
    v.check("orders")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_a_recovery_code_signs_the_admin_in_once(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(), WIDTHS[width])
    page = v.page
    sign_in(v)
    v.goto("/admin/_2fa/account")
    tab_to(v, page.get_by_role("button", name="Get recovery codes"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Your recovery codes")
    codes = page.locator("#codes li").all_inner_texts()
    assert len(codes) == 10
    expect(page.get_by_role("button", name="Print")).to_be_visible()
    v.check("recovery-codes")
    tab_to(v, page.get_by_role("link", name="Download as a text file"))
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    saved = Path(download.value.path()).read_text()
    assert all(code in saved for code in codes)
    tab_to(v, page.get_by_role("link", name="I've saved them"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Your sign-in methods")
    expect(page.locator("main")).not_to_contain_text(codes[0])
    sign_out_of_the_second_factor(v)
    tab_to(v, page.get_by_role("link", name="Use a recovery code"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Use a recovery code")
    expect(page.get_by_label("Recovery code")).to_be_focused()
    v.check("challenge-recovery")
    page.keyboard.type(codes[0].lower())
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("You're signed in")
    expect(page.get_by_role("status")).to_contain_text("You have 9 recovery codes left.")
    v.check("recovery-used")
    tab_to(v, page.get_by_role("link", name="Continue"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Orders")
    # The same code again: refused, at the field.
    sign_out_of_the_second_factor(v)
    v.goto("/admin/_2fa/challenge?factor=recovery")
    page.keyboard.type(codes[0])
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^That code didn't work\."))
    expect(page.get_by_label("Recovery code")).to_have_attribute("aria-invalid", "true")
    v.check("recovery-reused")


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_a_remembered_browser_skips_the_code_until_it_is_forgotten(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    from playwright.sync_api import expect

    v = visit(start_demo(interfaces=_demo_interfaces(remember_days=30)), WIDTHS[width])
    page = v.page
    log_in(v, "admin@example.com", "admin")
    text_me_a_code(v, "+1 ••• ••• 0123")
    box = page.get_by_label("Remember this browser for 30 days")
    tab_to(v, box, backwards=True)
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    page.keyboard.press("Tab")
    v.check("remember-ticked")
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Orders")
    # A new day: the proof is gone, the remembered browser is not.
    v.context.clear_cookies(name="tfa_admin")
    v.goto("/admin/users")
    expect(page.locator("h1")).to_have_text("Users")
    # Its proof is not fresh: the account page asks for a code first, with no box to tick.
    v.demo.age_the_sends(60)  # past the resend cooldown of the first code
    v.goto("/admin/_2fa/account")
    expect(page.locator("h1")).to_have_text("Enter your code")
    expect(page.get_by_label("Remember this browser for 30 days")).to_have_count(0)
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Your sign-in methods")
    expect(page.locator("main")).to_contain_text("(this browser)")
    v.check("account-browsers")
    tab_to(v, page.get_by_role("button", name=re.compile(r"^Forget ")))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^That browser is forgotten"))
    v.check("browser-forgotten")
    v.context.clear_cookies(name="tfa_admin")
    v.goto("/admin")
    expect(page.locator("h1")).to_have_text("Enter your code")


# ---------------------------------------------------------------------------- passkeys


def _virtual_authenticator(v: Visit) -> tuple[Any, str]:
    """Chromium's own virtual authenticator (the DevTools protocol's WebAuthn domain) in this
    page: a platform passkey (CTAP2, internal) that verifies its user and answers at once."""
    session = v.context.new_cdp_session(v.page)
    session.send("WebAuthn.enable")
    added = session.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return session, str(added["authenticatorId"])


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_admin_adds_a_passkey_and_signs_in_with_it(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """At http://localhost (browsers refuse passkeys at an IP address), with the port the
    settings name as the passkeys' origin; keyboard only: a name typed and Enter to add it, Enter
    on the challenge's focused button to use it."""
    from playwright.sync_api import expect

    from tests.servers import free_port

    port = free_port()
    interfaces = _demo_interfaces(origins=[f"http://localhost:{port}"])
    demo = start_demo(port=port, interfaces=interfaces)
    demo = replace(demo, url=demo.url.replace("127.0.0.1", "localhost"))
    v = visit(demo, WIDTHS[width])
    page = v.page
    session, authenticator = _virtual_authenticator(v)
    sign_in(v)
    v.goto("/admin/_2fa/account")
    expect(page.get_by_role("heading", name="Passkeys and security keys")).to_be_visible()
    v.check("account-no-passkey")
    name = page.get_by_label("Name for the new passkey (optional)")
    tab_to(v, name)
    page.keyboard.type("This laptop")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Your passkey is added"))
    expect(page.locator("main")).to_contain_text("This laptop")
    v.check("passkey-added")
    (credential,) = session.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert credential["rpId"] == "localhost"

    v.goto("/admin/_2fa/logout?next=/admin/users")
    tab_to(v, page.get_by_role("button", name="Sign out"))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Use your passkey")
    button = page.get_by_role("button", name="Use your passkey")
    expect(button).to_be_focused()
    expect(page.get_by_role("link", name=re.compile(r"^Text a code to"))).to_be_visible()
    v.check("challenge-passkey")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Users")
    assert _url_path(v) == "/admin/users"
    v.check("users")
    (used,) = session.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert used["signCount"] > credential["signCount"]


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_a_cancelled_passkey_says_so_and_the_other_ways_stay(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """The user does not touch the authenticator (no presence): the page says what happened, the
    button works again, and a texted code still signs in."""
    from playwright.sync_api import expect

    from tests.servers import free_port

    port = free_port()
    demo = start_demo(port=port, interfaces=_demo_interfaces(origins=[f"http://localhost:{port}"]))
    demo = replace(demo, url=demo.url.replace("127.0.0.1", "localhost"))
    v = visit(demo, WIDTHS[width])
    page = v.page
    session, authenticator = _virtual_authenticator(v)
    sign_in(v)
    v.goto("/admin/_2fa/account")
    tab_to(v, page.get_by_role("button", name="Add a passkey"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Your passkey is added"))
    v.context.clear_cookies(name="tfa_admin")
    # From now on the authenticator waits for a touch that never comes, and the person gives up:
    # the page's request is aborted (what the browser's own Cancel does) once it has started.
    session.send(
        "WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": authenticator, "enabled": False}
    )
    v.goto("/admin")
    expect(page.locator("h1")).to_have_text("Use your passkey")
    page.evaluate(
        """() => {
          const get = navigator.credentials.get.bind(navigator.credentials);
          navigator.credentials.get = (asked) => {
            const stop = new AbortController();
            setTimeout(() => stop.abort(), 200);
            return get({...asked, signal: stop.signal});
          };
        }"""
    )
    page.keyboard.press("Enter")
    alert = page.locator("#passkey-error")
    expect(alert).to_have_text(re.compile(r"^The passkey wasn't used"), timeout=20_000)
    expect(page.get_by_role("button", name="Use your passkey")).to_be_focused()
    v.check("passkey-cancelled")
    v.demo.age_the_sends(60)  # past the resend cooldown of the code that signed in before
    tab_to(v, page.get_by_role("link", name=re.compile(r"^Text a code to")))
    page.keyboard.press("Enter")
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Orders")


# ---------------------------------------------------------------------------- step-up (issue 17)


@pytest.mark.parametrize("width", WIDTH_IDS)
def test_a_step_up_rule_asks_again_and_returns_to_the_page(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], width: str
) -> None:
    """/admin/users wants a code typed for each visit (max_age_seconds 0): the sign-in's code is
    good for one visit, the next is a re-check (no "remember this browser"), and the code typed
    there brings the admin back to the users, once."""
    from playwright.sync_api import expect

    step_up = [{"path": "/admin/users", "max_age_seconds": 0}]
    v = visit(start_demo(interfaces=_demo_interfaces(step_up=step_up, remember_days=30)), WIDTHS[width])
    page = v.page
    sign_in(v)
    v.goto("/admin/users")
    expect(page.locator("h1")).to_have_text("Users")  # the sign-in's code, spent on this visit
    v.demo.age_the_sends(60)  # past the resend cooldown of the sign-in's code
    v.goto("/admin/users")
    expect(page.locator("h1")).to_have_text("Enter your code")
    assert _url_path(v) == "/admin/_2fa/challenge?reauth=1&next=%2Fadmin%2Fusers"
    expect(page.get_by_label("Remember this browser for 30 days")).to_have_count(0)
    text_me_a_code(v, "+1 ••• ••• 0123")
    type_code(v, v.demo.latest_code("1"))
    expect(page.locator("h1")).to_have_text("Users")
    assert _url_path(v) == "/admin/users"
    v.check("users-after-step-up")
    v.goto("/admin")
    expect(page.locator("h1")).to_have_text("Orders")  # elsewhere, the proof holds as before
    v.goto("/admin/users")
    expect(page.locator("h1")).to_have_text("Enter your code")


# ---------------------------------------------------------------------------- every language

# Names, not words of a language: they may stay as they are in any page.
NAMES = {
    "google",
    "authenticator",
    "microsoft",
    "password",
    "freeotp",
    "yubikey",
    "javascript",
    "qr",
    "sms",
    "id",
}
WORD = re.compile(r"[A-Za-z]{2,}")
READ_BY_PEOPLE = """() => {
  // The recovery codes and the app's key are random letters, not words.
  let body = document.body.innerText;
  for (const el of document.querySelectorAll("#codes, #secret")) body = body.replace(el.innerText, "");
  const texts = [document.title, body];
  for (const el of document.querySelectorAll("[aria-label], [placeholder], [title], [alt]"))
    for (const name of ["aria-label", "placeholder", "title", "alt"])
      if (el.hasAttribute(name)) texts.push(el.getAttribute(name));
  // What the scripts will say: the countdown's sentences and the passkey messages.
  for (const el of document.querySelectorAll("[data-texts]")) texts.push(el.getAttribute("data-texts"));
  for (const el of document.querySelectorAll("[data-passkey-texts]"))
    for (const attr of el.attributes) if (attr.name.startsWith("data-")) texts.push(attr.value);
  return texts.join("\\n");
}"""


def english_words(code: str) -> set[str]:
    """Words of the English texts that the language's own catalogue never uses (so "Passkey" in
    German, or "code" in French, is no sign of English left behind)."""
    from babel.messages.pofile import read_po

    from tfa_middleware.i18n import BUILT_IN

    def words(texts: Iterator[str]) -> set[str]:
        return {w.lower() for text in texts for w in WORD.findall(text)}

    with (BUILT_IN / code / "LC_MESSAGES" / "tfa.po").open("rb") as file:
        catalog = read_po(file)
    messages = [m for m in catalog if m.id]

    def forms(value: object) -> Iterator[str]:
        yield from ([value] if isinstance(value, str) else value)  # type: ignore[misc]

    english = words(text for m in messages for text in forms(m.id))
    ours = words(text for m in messages for text in forms(m.string))
    return english - ours - NAMES


def assert_no_english(v: Visit, code: str, english: set[str]) -> None:
    text = v.page.evaluate(READ_BY_PEOPLE)
    left = sorted({w for w in WORD.findall(text) if w.lower() in english})
    assert not left, f"{v.name}-{v.step:02d} ({code}): English left on {v.page.url}: {left}\n{text}"


def test_the_english_check_finds_english() -> None:
    english = english_words("de")
    assert {"enter", "your", "verify", "send"} <= english
    assert not {"passkey", "name", "code", "shop", "sms", "javascript"} & english  # German uses them too


@pytest.mark.parametrize(
    "code",
    [c for c in ("de", "fr", "es", "it", "nl", "pt_BR", "pl", "ru", "uk", "tr", "ar", "he", "zh_Hans", "ja")],
)
def test_every_page_in_every_language(
    start_demo: Callable[..., Demo], visit: Callable[..., Visit], code: str
) -> None:
    """The browser asks for the language (its Accept-Language); every page of the way in, the
    account, the phone, the app, the recovery codes and the management pages: no English left
    (names aside), at 375 px, axe clean, and each page's lang and dir are the language's."""
    from playwright.sync_api import expect

    from tfa_middleware.i18n import Languages

    language = Languages().get(code)
    english = english_words(code)
    # A grace of a few logins, so that the enrollment page offers "Skip for now" (issue 17).
    demo = start_demo(**PLAIN, interfaces=_demo_interfaces(enroll_grace={"logins": 3}))
    v = visit(demo, WIDTHS["phone"], locale=language.tag)
    page = v.page

    def check(what: str) -> None:
        expect(page.locator("html")).to_have_attribute("lang", language.tag)
        expect(page.locator("html")).to_have_attribute("dir", language.direction)
        v.check(what)
        assert_no_english(v, code, english)

    def go(path: str) -> None:
        with page.expect_navigation():
            page.evaluate("path => { location.href = path; }", path)

    def press(selector: str) -> None:
        with page.expect_navigation():
            page.locator(selector).click()

    log_in(v, "vendor@example.com", "vendor")
    page.wait_for_url("**/_2fa/enroll*")
    expect(page.locator("#skip-enrollment")).to_be_visible()
    check("enroll")
    log_in(v, "admin@example.com", "admin")
    page.wait_for_url("**/_2fa/challenge*")
    check("challenge")
    press("#send-first")
    check("code-sent")
    type_code(v, v.demo.latest_code("1"))
    page.wait_for_url("**/admin")
    for path, what in [
        ("/admin/_2fa/account", "account"),
        ("/admin/_2fa/phone", "phone"),
        ("/admin/_2fa/manage", "manage"),
        ("/admin/_2fa/manage?interface=admin&user=1", "manage-user"),
        ("/admin/_2fa/nothing-here", "not-found"),
    ]:
        go(path)
        check(what)
    # The vendor exempted for a week: the notice, and the exemption as the manage page shows it.
    go("/admin/_2fa/manage?interface=admin&user=2")
    page.locator("#exempt-until").fill((datetime.now(UTC) + timedelta(days=7)).date().isoformat())
    page.locator("#exempt-reason").fill("1234")
    press("#exempt")
    expect(page.locator("#exemption")).to_be_visible()
    check("manage-exempt")
    go("/admin/_2fa/account")
    press("#new-codes")
    check("recovery-codes")
    codes = page.locator("#codes li").all_inner_texts()
    press("#done")
    press("#add-app")
    check("app")
    secret = page.locator("#secret").inner_text().replace(" ", "")
    type_code(v, app_code_now(secret))
    check("app-added")
    go("/admin/_2fa/logout")
    check("logout")
    press("form[action*='/logout'] button[type=submit]")
    check("challenge-app")
    go("/admin/_2fa/challenge?factor=recovery")
    check("challenge-recovery")
    page.locator("#recovery-code").fill(codes[0])
    with page.expect_navigation():
        page.keyboard.press("Enter")
    check("recovery-used")
    if language.direction == "rtl":
        assert_right_to_left(v)


def assert_right_to_left(v: Visit) -> None:
    """Laid out right to left: the heading starts at the card's right edge, and of the two links
    out of the pages the first stands to the right of the second."""
    placed = v.page.evaluate(
        """() => {
          const main = document.querySelector("main").getBoundingClientRect();
          const range = document.createRange();
          range.selectNodeContents(document.querySelector("h1"));
          const h1 = range.getBoundingClientRect();
          const links = [...document.querySelectorAll(".way-out a")].map((a) => a.getBoundingClientRect());
          return {
            direction: getComputedStyle(document.querySelector("main")).direction,
            rightGap: main.right - h1.right, leftGap: h1.left - main.left,
            linksRightToLeft: links.length < 2 || links[0].left > links[1].left,
          };
        }"""
    )
    assert placed["direction"] == "rtl", placed
    assert placed["rightGap"] < placed["leftGap"], f"the heading is not at the right: {placed}"
    assert placed["linksRightToLeft"], placed
