"""Branding from the YAML (title, logo, colour) and template overrides, without a browser.

The browser half (the colour on the buttons, the logo on screen, axe on branded pages) is in
test_browser.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import ADMIN_PHONE, SECRET, Harness
from tfa_middleware import ConfigError, settings_from_mapping
from tfa_middleware.providers.sandbox import SandboxProvider
from tfa_middleware.settings import BrandingSettings, contrast_with_white

DEMO_TEMPLATES = Path(__file__).resolve().parent.parent / "demo_app" / "tfa_templates"


def settings_with(branding: Any) -> Any:
    return settings_from_mapping(
        {
            "secret_keys": [SECRET],
            "branding": branding,
            "interfaces": {
                "admin": {"path_prefix": "/admin", "identity": {"from": "header", "header": "x-user"}}
            },
            "trusted_proxies": ["127.0.0.1"],
        }
    )


def test_no_branding_by_default() -> None:
    settings = settings_with(None)
    assert settings.branding == BrandingSettings()
    assert settings.describe()["branding"] == {"title": None, "logo_url": None, "primary_color": None}


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("#2F5BD3", "#2f5bd3"),
        ("#036", "#003366"),
        (" #8a1c7c ", "#8a1c7c"),
        ("#767676", "#767676"),  # 4.54:1, the lightest grey that passes
    ],
)
def test_primary_color_is_kept_as_rrggbb(given: str, kept: str) -> None:
    assert settings_with({"primary_color": given}).branding.primary_color == kept


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("primary_color", "red", "must be a colour as #rgb or #rrggbb, got 'red'"),
        ("primary_color", "#12345", "must be a colour as #rgb or #rrggbb, got '#12345'"),
        ("primary_color", "#fff;}body{display:none", "must be a colour as #rgb or #rrggbb"),
        ("primary_color", 0x2F5BD3, "expected a string, got a number"),
        (
            "primary_color",
            "#ffcc00",
            "#ffcc00 has a contrast of 1.5:1 with white; the pages put white text on it and show links "
            "in it, which needs at least 4.5:1 (WCAG AA): choose a darker shade",
        ),
        ("primary_color", "#777777", "has a contrast of 4.4:1 with white"),  # 4.48: rounded down
        (
            "logo_url",
            "javascript:alert(1)",
            "must be a path on this site (e.g. /static/logo.svg) or an https",
        ),
        ("logo_url", "JavaScript:alert(1)", "must be a path on this site"),
        ("logo_url", "data:image/svg+xml,<svg onload=alert(1)>", "must be a path on this site"),
        ("logo_url", "http://cdn.example.com/logo.png", "must be a path on this site"),
        ("logo_url", "//cdn.example.com/logo.png", "must be a path on this site"),
        ("logo_url", "logo.png", "must be a path on this site"),
        ("logo_url", '/logo.png" onerror="alert(1)', "without spaces, quotes, '<', '>' or '\\'"),
        ("logo_url", "/\\evil.example/logo.png", "must be a path on this site"),
        # The origin of an https logo goes into the CSP: a ';' would start a directive of its own.
        ("logo_url", "https://cdn.example.com;script-src:*/logo.png", "must be a path on this site"),
        ("logo_url", "https://user@cdn.example.com/logo.png", "must be a path on this site"),
        ("title", "", "must not be empty"),
        ("title", "Two\nlines", "must be one line of at most 80 characters"),
        ("title", "x" * 81, "must be one line of at most 80 characters"),
        ("colour", "#2f5bd3", "unknown key (expected one of: logo_url, primary_color, title)"),
    ],
)
def test_bad_branding_is_refused_with_its_key_path(key: str, value: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings_with({key: value})
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"branding.{key}: ")
    assert problem in exc.value.problems[0]


def test_branding_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as exc:
        settings_with("Acme")
    assert exc.value.problems == ["branding: expected a mapping, got a string"]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("/static/logo.svg", None),
        ("/static/logo.svg?v=2", None),
        ("https://cdn.example.com/acme/logo.png", "https://cdn.example.com"),
        ("https://CDN.Example.com:8443/logo.png?v=1#x", "https://cdn.example.com:8443"),
        ("https://cdn.example.com", "https://cdn.example.com"),
    ],
)
def test_logo_url_and_the_origin_the_csp_must_allow(url: str, origin: str | None) -> None:
    branding = settings_with({"logo_url": url}).branding
    assert branding.logo_url == url
    assert branding.logo_origin == origin


@pytest.mark.parametrize(
    ("color", "ratio"),
    [("#ffffff", 1.0), ("#000000", 21.0), ("#767676", 4.54), ("#1f5fd1", 5.81), ("#2f5bd3", 5.9)],
)
def test_contrast_with_white_follows_wcag(color: str, ratio: float) -> None:
    assert contrast_with_white(color) == pytest.approx(ratio, abs=0.01)


# ---------------------------------------------------------------------- on the pages


async def branded(make_harness: Any, **overrides: Any) -> Harness:
    h: Harness = await make_harness(**overrides)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    return h


async def test_the_pages_show_the_branding(make_harness: Any) -> None:
    h = await branded(
        make_harness,
        branding={"title": "Acme & Sons", "logo_url": "/static/acme.svg", "primary_color": "#8a1c7c"},
    )
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert "<title>Enter your code · Two-step verification · Acme &amp; Sons</title>" in page.text
    assert '<header class="brand"><img src="/static/acme.svg" alt="Acme &amp; Sons"></header>' in page.text
    assert '<link rel="stylesheet" href="/admin/_2fa/static/brand.css">' in page.text
    # A same-origin logo needs nothing more than the CSP's img-src 'self'.
    assert "img-src 'self' data:;" in page.headers["content-security-policy"]

    css = await h.client.get("/admin/_2fa/static/brand.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert css.text == ":root{--accent:#8a1c7c}\n"

    # Error pages are branded too.
    missing = await h.client.get("/admin/_2fa/nothing", headers=h.as_user("alice"))
    assert missing.status_code == 404
    assert "<title>Page not found · Two-step verification · Acme &amp; Sons</title>" in missing.text
    assert "brand.css" in missing.text


async def test_a_title_alone_is_shown_as_text(make_harness: Any) -> None:
    h = await branded(make_harness, branding={"title": "Acme <Outfitters>"})
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert '<header class="brand">Acme &lt;Outfitters&gt;</header>' in page.text
    assert "brand.css" not in page.text


async def test_an_https_logo_is_allowed_by_the_csp_of_our_pages_only(make_harness: Any) -> None:
    h = await branded(make_harness, branding={"logo_url": "https://cdn.example.com/acme/logo.png"})
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    csp = page.headers["content-security-policy"]
    assert "img-src 'self' data: https://cdn.example.com;" in csp
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp
    assert "style-src 'self';" in csp
    assert '<img src="https://cdn.example.com/acme/logo.png" alt="">' in page.text


async def test_without_branding_the_pages_are_unchanged(make_harness: Any) -> None:
    h = await branded(make_harness)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert "<title>Enter your code · Two-step verification</title>" in page.text
    assert "<header" not in page.text
    assert "brand.css" not in page.text
    css = await h.client.get("/admin/_2fa/static/brand.css", headers=h.as_user("alice"))
    assert css.status_code == 404


async def test_an_override_of_base_html_can_extend_the_built_in_frame(
    make_harness: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "base.html").write_text(
        '{% extends "tfa_middleware/base.html" %}'
        "{% block footer %}<footer><p>Questions? Call the shop.</p></footer>{% endblock %}"
    )
    h = await branded(make_harness, templates_dir=str(folder), branding={"title": "Acme"})
    for url in ("/admin/_2fa/challenge", "/admin/_2fa/logout", "/admin/_2fa/nothing"):
        page = await h.client.get(url, headers=h.as_user("alice"))
        assert "<footer><p>Questions? Call the shop.</p></footer>" in page.text, url
        assert '<header class="brand">Acme</header>' in page.text, url  # the rest of the frame stays
        assert page.text.count("<main") == 1


async def test_the_demo_override_is_a_working_example(make_harness: Any) -> None:
    h = await branded(make_harness, templates_dir=str(DEMO_TEMPLATES))
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert "tfa-middleware outbox --config demo_app/config.yaml" in page.text
    assert "Enter your code" in page.text


async def test_the_code_field_sends_itself_only_when_every_code_has_one_length(make_harness: Any) -> None:
    h = await branded(make_harness)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert '<main class="card" data-code-length="6">' in page.text  # the sandbox: always 6 digits
    # Authy (6 to 12 digits) or Twilio Verify (4 to 10): the page cannot know when a code is complete.
    sandbox = h.service.provider
    assert isinstance(sandbox, SandboxProvider)
    sandbox.code_lengths = (6, 12)
    page = await h.client.get("/admin/_2fa/challenge", headers=h.as_user("alice"))
    assert '<main class="card">' in page.text
