"""The reader's language: which one a request gets, what follows it (numbers, durations, the
writing direction, the texted code, the provider's message), a shop's own catalogues, and the
settings that choose it. The catalogues themselves are tests/test_catalogues.py's; the pages in
a real browser, in every language, tests/test_browser.py's."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po
from starlette.types import Receive, Scope, Send

from tests.harness import ADMIN_PHONE, Harness, config
from tests.helpers import Cli, config_file
from tfa_middleware import ConfigError, settings_from_mapping
from tfa_middleware.i18n import SHIPPED, Languages, preferred, provider_locale
from tfa_middleware.providers import AuthyProvider, Target, TwilioVerifyProvider
from tfa_middleware.providers.base import Purpose
from tfa_middleware.settings import LimitSettings, ProviderSettings, Secret
from tfa_middleware.store import outbox as outbox_rows
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_AUTHY_API_KEY,
    FAKE_SERVICE_SID,
    FakeAuthy,
    FakeTwilioVerify,
)

ALICE = {"x-test-user": "alice", "accept": "text/html"}
CHALLENGE = "/admin/_2fa/challenge"
ENROLL = "/admin/_2fa/enroll"  # where the challenge sends alice, who has no phone yet
PHONE = "+12015550123"

# ---------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ("de-CH,de;q=0.9", ["de-CH", "de"]),
        ("fr;q=0.1, ar;q=0.5, en", ["en", "ar", "fr"]),
        ("es;q=0.8,it;q=0.8", ["es", "it"]),  # equal weights: the header's order
        ("*,nl;q=0", []),  # a wildcard says nothing, q=0 is "not this one"
        ("de;q=2, ; ;q=x, pt_BR", ["pt-BR"]),  # malformed parts are left out
        ("", []),
        (None, []),
    ],
)
def test_accept_language_is_read_by_weight(header: str | None, tags: list[str]) -> None:
    assert preferred(header) == tags


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("de-CH,de;q=0.9", "de"),
        ("de-CH", "de"),  # a region finds its language
        ("zh-CN,zh;q=0.9", "zh_Hans"),
        ("zh-Hans-CN", "zh_Hans"),
        ("zh-TW,ja;q=0.5", "ja"),  # no traditional Chinese is shipped: the next choice, not simplified
        ("pt-PT", "pt_BR"),
        ("PT-br", "pt_BR"),
        ("he-IL", "he"),
        ("iw", "he"),
        ("xx,sv;q=0.9", "en"),  # nothing shipped: English
        (None, "en"),
        ("x" * 5000, "en"),
    ],
)
def test_the_browser_language_is_negotiated(header: str | None, code: str) -> None:
    assert Languages().negotiate(accept_language=header).code == code


def test_the_shop_choice_beats_the_browser_and_the_fixed_setting_beats_both() -> None:
    languages = Languages()
    assert languages.negotiate(None, "fr-FR", "de").code == "fr"
    assert languages.negotiate("it", "fr", "de").code == "it"
    assert languages.negotiate(None, "klingon", "de").code == "de"  # a value no catalogue matches
    assert languages.negotiate(None, "x" * 100, "de").code == "de"


def test_what_follows_the_language() -> None:
    languages = Languages()
    german, arabic, english = languages.get("de"), languages.get("ar"), languages.get("en")
    assert german.in_duration(14 * 60) == "in 14 Minuten"
    assert german.duration(25) == "25 Sekunden"
    assert english.in_duration(90 * 60 - 1) == "in 90 minutes"  # whole units, as before
    assert english.duration(2 * 3600) == "2 hours"
    # A wait is never said shorter than it is: rounded up to the unit it is said in.
    assert english.in_duration(14 * 60 + 12) == "in 15 minutes"
    assert german.duration(2 * 3600 + 60) == "3 Stunden"
    assert english.duration(61) == "61 seconds"
    assert english.duration(0.2) == "1 second"
    assert german.number(1234.5) == "1.234,5"
    assert (german.direction, arabic.direction, arabic.tag) == ("ltr", "rtl", "ar")
    assert german.phone_example[0] == "+49"
    assert languages.get("pt_BR").phone_example[0] == "+55"
    assert arabic.ltr("+1 ••• ••• 0123") == '<bdi dir="ltr">+1 ••• ••• 0123</bdi>'
    assert german.ltr("<b>") == "<b>"  # plain text in a left-to-right page, escaped by the template
    assert german.gettext("") == ""  # never the catalogue's header
    assert (
        german.ngettext(
            "You can ask for a new code in %(num)s second.",
            "You can ask for a new code in %(num)s seconds.",
            1,
        )
        == "Sie können in 1 Sekunde einen neuen Code anfordern."
    )


@pytest.mark.parametrize(
    ("code", "provider"), [("de", "de"), ("pt_BR", "pt-BR"), ("zh_Hans", "zh-CN"), ("he", "he"), ("en", "en")]
)
def test_the_provider_is_told_its_own_name_for_the_language(code: str, provider: str) -> None:
    assert provider_locale(code) == provider


# ---------------------------------------------------------------------------- the pages


async def test_the_challenge_speaks_the_browser_language(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness()
    page = await h.client.get(
        CHALLENGE, headers={**ALICE, "accept-language": "de-CH,de;q=0.9"}, follow_redirects=True
    )
    assert '<html lang="de" dir="ltr">' in page.text
    assert "<h1>Bestätigung in zwei Schritten einrichten</h1>" in page.text
    assert 'placeholder="+49"' in page.text  # the enrollment form's example follows the language
    english = await h.client.get(CHALLENGE, headers=ALICE, follow_redirects=True)
    assert '<html lang="en" dir="ltr">' in english.text
    assert "<h1>Set up two-step verification</h1>" in english.text


async def test_an_arabic_page_is_right_to_left(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness()
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    page = await h.client.get(CHALLENGE, headers={**ALICE, "accept-language": "ar"})
    assert '<html lang="ar" dir="rtl">' in page.text
    assert "<h1>أدخل الرمز</h1>" in page.text
    # The number stays left to right inside the right-to-left sentence.
    assert '<bdi dir="ltr">+1 ••• ••• 0123</bdi>' in page.text


async def test_the_interface_locale_overrides_the_browser(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["locale"] = "fr"
    h: Harness = await make_harness(interfaces=interfaces)
    page = await h.client.get(CHALLENGE, headers={**ALICE, "accept-language": "de"}, follow_redirects=True)
    assert '<html lang="fr" dir="ltr">' in page.text
    assert "Configurer la validation en deux étapes" in page.text


async def test_the_shop_cookie_overrides_the_browser(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["locale_from"] = {"cookie": "shop_lang"}
    h: Harness = await make_harness(interfaces=interfaces)
    # httpx drops a hand-set Cookie header on a redirect: the page the challenge redirects to, at once.
    spanish = await h.client.get(
        ENROLL, headers={**ALICE, "accept-language": "de", "cookie": "shop_lang=es-MX"}
    )
    assert '<html lang="es" dir="ltr">' in spanish.text
    unknown = await h.client.get(ENROLL, headers={**ALICE, "accept-language": "de", "cookie": "shop_lang=xx"})
    assert '<html lang="de" dir="ltr">' in unknown.text


async def test_a_scope_key_the_shop_sets_overrides_the_browser(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["locale_from"] = {"scope_key": "shop.language"}
    h: Harness = await make_harness(interfaces=interfaces)

    async def shop_middleware(scope: Scope, receive: Receive, send: Send) -> None:
        await h.app({**scope, "shop.language": "pl"}, receive, send)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shop_middleware), base_url="http://shop.test"
    ) as c:
        page = await c.get(CHALLENGE, headers={**ALICE, "accept-language": "de"}, follow_redirects=True)
    assert '<html lang="pl" dir="ltr">' in page.text


async def test_the_texted_code_and_the_waits_are_in_the_reader_language(
    make_harness: Callable[..., Any],
) -> None:
    h: Harness = await make_harness(limits=LimitSettings())
    german = {**ALICE, "accept-language": "de"}
    token = await h.csrf(german)
    await h.client.post(
        "/admin/_2fa/enroll",
        data={"csrf_token": token, "country_code": "1", "phone": "2015550123"},
        headers=german,
    )
    (message,) = await outbox_rows.latest(h.service.store, 5)
    assert message.body.startswith("Ihr Shop: Ihr Bestätigungscode ist ")
    assert message.body.endswith("Er läuft in 10 Minuten ab. Geben Sie ihn nicht weiter.")
    again = await h.client.post("/admin/_2fa/send", data={"csrf_token": token}, headers=german)
    assert again.status_code == 429
    assert "Sie können in 30 Sekunden einen neuen Code anfordern." in again.text


async def test_the_middleware_refusals_are_in_the_browser_language(make_harness: Callable[..., Any]) -> None:
    h: Harness = await make_harness()
    refused = await h.client.post("/admin/orders", headers={"accept-language": "fr"})
    assert refused.status_code == 403
    assert '<html lang="fr" dir="ltr">' in refused.text
    assert "<h1>Cette page ne peut pas être affichée</h1>" in refused.text
    english = await h.client.post("/admin/orders")
    assert "<h1>This page can't be shown</h1>" in english.text


# ---------------------------------------------------------------------------- a shop's own catalogues


def _catalogue(folder: Path, code: str, texts: dict[str, str], *, compiled: bool = False) -> None:
    catalog = Catalog(locale=code, domain="tfa")
    for msgid, msgstr in texts.items():
        catalog.add(msgid, msgstr)
    target = folder / "locale" / code / "LC_MESSAGES"
    target.mkdir(parents=True)
    buffer = io.BytesIO()
    (write_mo if compiled else write_po)(buffer, catalog)
    (target / f"tfa.{'mo' if compiled else 'po'}").write_bytes(buffer.getvalue())


async def test_a_shop_overrides_a_text_and_adds_a_language(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    shop = tmp_path / "shop_templates"
    _catalogue(shop, "de", {"Set up two-step verification": "Zweiten Schritt einrichten"})
    _catalogue(shop, "sv", {"Set up two-step verification": "Ställ in tvåstegsverifiering"}, compiled=True)
    h: Harness = await make_harness(templates_dir=str(shop))
    german = await h.client.get(CHALLENGE, headers={**ALICE, "accept-language": "de"}, follow_redirects=True)
    assert "<h1>Zweiten Schritt einrichten</h1>" in german.text  # the shop's text
    assert "Ländervorwahl" in german.text  # the rest still ours
    swedish = await h.client.get(
        CHALLENGE, headers={**ALICE, "accept-language": "sv-SE"}, follow_redirects=True
    )
    assert '<html lang="sv" dir="ltr">' in swedish.text
    assert "<h1>Ställ in tvåstegsverifiering</h1>" in swedish.text
    assert "Country code" in swedish.text  # what the shop did not translate falls back to English


# ---------------------------------------------------------------------------- the providers


async def test_twilio_verify_and_authy_are_asked_for_the_reader_language() -> None:
    target = Target("admin", "alice", PHONE, Purpose.LOGIN, locale="pt_BR")
    twilio_fake = FakeTwilioVerify()
    twilio_settings = ProviderSettings(
        name="twilio_verify",
        production_mode=True,
        account_sid=FAKE_ACCOUNT_SID,
        auth_token=Secret(FAKE_AUTH_TOKEN),
        service_sid=FAKE_SERVICE_SID,
        api_url="https://verify.fake",
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(twilio_fake)) as client:
        twilio = TwilioVerifyProvider(twilio_settings, client=client)
        await twilio.send(target, "sms")
        await twilio.send(Target("admin", "bob", "+12015550124", Purpose.LOGIN), "sms")
    assert twilio_fake.requests[0].form == {"To": PHONE, "Channel": "sms", "Locale": "pt-BR"}
    assert "Locale" not in twilio_fake.requests[1].form  # no language asked: Twilio's own choice
    assert [sent.locale for sent in twilio_fake.outbox] == ["pt-BR", None]

    authy_fake = FakeAuthy()
    authy_settings = ProviderSettings(
        name="authy", production_mode=True, api_key=Secret(FAKE_AUTHY_API_KEY), api_url="https://authy.fake"
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(authy_fake)) as client:
        authy = AuthyProvider(authy_settings, Secret("p" * 40), client=client)
        authy_id = await authy.register(target)
        await authy.send(Target("admin", "alice", PHONE, Purpose.LOGIN, authy_id, locale="de"), "sms")
    assert authy_fake.requests[-1].query == {"force": "true", "locale": "de"}
    assert authy_fake.outbox[-1].locale == "de"


# ---------------------------------------------------------------------------- the settings


def _settings(tmp_path: Path, **admin: Any) -> Any:
    data = config(tmp_path)
    data["interfaces"]["admin"].update(admin)
    return settings_from_mapping(data)


@pytest.mark.parametrize(
    ("admin", "problem"),
    [
        (
            {"locale": "not a language"},
            "interfaces.admin.locale: 'not a language' is not a language Babel knows",
        ),
        ({"locale": 7}, "interfaces.admin.locale: "),
        ({"locale": "sv"}, "interfaces.admin.locale: 'sv' has no catalogue"),
        (
            {"locale_from": {"cookie": "a", "scope_key": "b"}},
            "interfaces.admin.locale_from: give exactly one",
        ),
        ({"locale_from": {}}, "interfaces.admin.locale_from: give exactly one"),
        ({"locale_from": {"cookie": "bad name"}}, "interfaces.admin.locale_from.cookie: "),
    ],
)
def test_a_bad_language_setting_names_its_key(tmp_path: Path, admin: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _settings(tmp_path, **admin)
    assert any(line.startswith(problem) for line in exc.value.problems), exc.value.problems


def test_good_language_settings(tmp_path: Path) -> None:
    assert _settings(tmp_path, locale="pt-BR").interfaces["admin"].locale == "pt_BR"
    assert _settings(tmp_path, locale="de_CH").interfaces["admin"].locale == "de_CH"  # finds de
    assert _settings(tmp_path, locale_from={"scope_key": "lang"}).interfaces["admin"].locale_from is not None
    shop = tmp_path / "shop_templates"
    _catalogue(shop, "sv", {"Back": "Tillbaka"})
    data = config(tmp_path, templates_dir=str(shop))
    data["interfaces"]["admin"]["locale"] = "sv"
    assert settings_from_mapping(data).interfaces["admin"].locale == "sv"


def test_check_config_names_a_bad_locale(tmp_path: Path, cli: Cli) -> None:
    path = config_file(tmp_path)
    path.write_text(
        path.read_text().replace(
            "    path_prefix: /admin\n", "    path_prefix: /admin\n    locale: xx-!!\n", 1
        )
    )
    result = cli("check-config", str(path))
    assert result.returncode == 1
    assert (
        "  - interfaces.admin.locale: 'xx-!!' is not a language Babel knows" in result.stderr.splitlines()[1]
    )


def test_every_shipped_language_loads() -> None:
    languages = Languages()
    assert languages.codes[: len(SHIPPED)] == SHIPPED
    for code in SHIPPED:
        language = languages.get(code)
        assert language.gettext("Back") != ""
        assert language.locale.language == code.split("_")[0]
