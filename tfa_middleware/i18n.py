"""The languages of the pages and of the texted code: the gettext catalogues, which one a request
gets, and what follows the language (plural forms, numbers, dates, durations, the direction of the
writing, the example phone number).

Catalogues: ``tfa_middleware/locale/<lang>/LC_MESSAGES/tfa.mo`` (shipped, compiled from the ``.po``
beside it by ``make compile``), under a shop's own ``<templates_dir>/locale/<lang>/LC_MESSAGES/``
``tfa.mo`` or, without one, ``tfa.po`` (compiled in memory at start-up): a shop's catalogue adds a
language, or overrides some texts of a shipped one (the rest still come from ours).

A request's language (:meth:`Languages.negotiate`), the first that applies:

1. the interface's ``locale`` (fixed);
2. its ``locale_from``: a cookie or a scope key the shop already sets (``de``, ``pt-BR``, ``fr_FR``);
3. the browser's ``Accept-Language``, by q-value (``de-CH,de;q=0.9`` finds German);
4. English.

Only the pages ask (and the code they send): a request with a valid proof never negotiates.
"""

from __future__ import annotations

import gettext
import io
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import phonenumbers
from babel import Locale
from babel.core import get_global, negotiate_locale
from babel.dates import format_date, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from markupsafe import Markup

DOMAIN = "tfa"
BUILT_IN = Path(__file__).parent / "locale"
DEFAULT = "en"
SHIPPED = ("en", "de", "fr", "es", "it", "nl", "pt_BR", "pl", "ru", "uk", "tr", "ar", "he", "zh_Hans", "ja")
# What browsers send for the languages we name otherwise (lower case, "-" between the parts): the
# only Chinese we ship is simplified, the only Portuguese Brazilian's (better than English for a
# reader in Portugal); "iw" is Hebrew's old code. A catalogue of the exact tag still wins.
ALIASES = {
    "zh": "zh-Hans",
    "zh-cn": "zh-Hans",
    "zh-sg": "zh-Hans",
    "zh-my": "zh-Hans",
    "zh-hans-cn": "zh-Hans",
    "zh-hans-sg": "zh-Hans",
    "pt": "pt-BR",
    "pt-pt": "pt-BR",
    "iw": "he",
}
MAX_ACCEPT_LANGUAGE = 1024  # characters of the header read: a ranked list, not a document
_RANGE = re.compile(
    r"\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8}){0,3})\s*(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*"
)


def N_(message: str) -> str:
    """Marks a text for the catalogue where it is defined; it is translated where it is shown."""
    return message


def tag_of(code: str) -> str:
    """A catalogue's directory name as HTML's ``lang`` writes it: ``pt_BR`` → ``pt-BR``."""
    return code.replace("_", "-")


def preferred(accept_language: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, best first (equal q-values: in the header's order);
    ``*``, ``q=0`` and anything malformed are left out."""
    if not accept_language:
        return []
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language[:MAX_ACCEPT_LANGUAGE].split(",")):
        match = _RANGE.fullmatch(part)
        if match is None:
            continue
        quality = float(match[2]) if match[2] else 1.0
        if quality > 0:
            ranked.append((-quality, i, match[1].replace("_", "-")))
    return [tag for _, _, tag in sorted(ranked)]


def valid_code(code: str) -> bool:
    """A language Babel knows (``de``, ``pt_BR``, ``zh_Hans``): CLDR has its plural rules and formats."""
    try:
        Locale.parse(code)
    except (ValueError, TypeError):
        return False
    return True


def shop_codes(templates_dir: str | Path | None) -> frozenset[str]:
    """The languages of a shop's own catalogues (``<templates_dir>/locale/<lang>/LC_MESSAGES/tfa.[mp]o``)."""
    if not templates_dir:
        return frozenset()
    folder = Path(templates_dir) / "locale"
    if not folder.is_dir():
        return frozenset()
    return frozenset(
        entry.name
        for entry in folder.iterdir()
        if any((entry / "LC_MESSAGES" / f"{DOMAIN}.{ext}").is_file() for ext in ("mo", "po"))
    )


def _catalogue(root: Path, code: str) -> gettext.GNUTranslations | None:
    folder = root / code / "LC_MESSAGES"
    compiled = folder / f"{DOMAIN}.mo"
    if compiled.is_file():
        with compiled.open("rb") as file:
            return gettext.GNUTranslations(file)
    source = folder / f"{DOMAIN}.po"
    if not source.is_file():
        return None
    with source.open("rb") as file:
        catalog = read_po(file, locale=code, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out, as msgfmt leaves them
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Language:
    """One language, as a page uses it: its texts, and the formats that follow it."""

    def __init__(self, code: str, translations: gettext.NullTranslations) -> None:
        self.code = code
        self.locale = Locale.parse(code)
        self.tag = tag_of(code)
        self.direction = "rtl" if self.locale.character_order == "right-to-left" else "ltr"
        self.translations = translations

    def __repr__(self) -> str:
        return f"Language({self.code!r})"

    # ------------------------------------------------------------------ texts

    def gettext(self, message: str, **values: Any) -> str:
        """The translation of a whole sentence; its named placeholders (``%(wait)s``) filled."""
        if not message:
            return ""  # gettext("") is the catalogue's header, never a text to show
        text = self.translations.gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        """The form of the sentence for ``n`` in this language's plural rules; ``%(num)s`` is ``n``."""
        return self.translations.ngettext(singular, plural, n) % {"num": self.number(n), **values}

    def html(self, message: str, **values: Any) -> Markup:
        """The translation as HTML: the values escaped, unless they are markup already (``ltr``)."""
        return _trusted(self.translations.gettext(message)) % values

    def ltr(self, text: str) -> Markup | str:
        """A phone number or a network inside a right-to-left sentence: isolated, left to right
        (in a left-to-right page it is already in the sentence's direction, and stays plain text)."""
        return Markup('<bdi dir="ltr">%s</bdi>') % text if self.direction == "rtl" else text

    def template_names(self) -> dict[str, Any]:
        """What the templates call: ``{% trans %}`` (Jinja's i18n extension, new style) and ``_()``."""
        return {
            "gettext": self._template_gettext,
            "ngettext": self._template_ngettext,
            "_": self._template_gettext,
            "lang": self,
        }

    def _template_gettext(self, message: str, **values: Any) -> Markup:
        return _trusted(self.translations.gettext(message)) % values

    def _template_ngettext(self, singular: str, plural: str, n: int, **values: Any) -> Markup:
        values.setdefault("num", n)
        return _trusted(self.translations.ngettext(singular, plural, n)) % values

    # ------------------------------------------------------------------ formats

    def number(self, value: float) -> str:
        return format_decimal(value, locale=self.locale)

    def duration(self, seconds: float) -> str:
        """A wait as a reader says it: "25 seconds", "14 minutes", "2 hours" (whole units; up to
        89 seconds in seconds, up to 89 minutes in minutes)."""
        return format_timedelta(_wait(seconds), threshold=1.5, locale=self.locale)

    def in_duration(self, seconds: float) -> str:
        """The same, as a time to come: "in 14 minutes"."""
        return format_timedelta(_wait(seconds), threshold=1.5, add_direction=True, locale=self.locale)

    def when(self, at: float | None) -> str:
        """A moment of the past or future, in UTC (the server knows no reader's time zone)."""
        if not at:
            return self.gettext("never")
        moment = datetime.fromtimestamp(at, UTC)
        day = format_date(moment, "medium", locale=self.locale)
        hour = format_time(moment, "short", tzinfo=UTC, locale=self.locale)
        pattern: str = self.locale.datetime_formats["medium"]  # "{1}, {0}": the date, then the time
        return pattern.format(hour, day) + " UTC"

    @cached_property
    def region(self) -> str:
        """The country most readers of this language live in (CLDR's likely subtags): ``de`` → DE."""
        if self.locale.territory:
            return self.locale.territory
        likely: Mapping[str, str] = get_global("likely_subtags")
        return str(likely.get(self.locale.language, "en_Latn_US")).split("_")[-1]

    @cached_property
    def phone_example(self) -> tuple[str, str]:
        """The form's placeholders: the calling code and a mobile number as that country writes it."""
        region = self.region if self.region in phonenumbers.SUPPORTED_REGIONS else "US"
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        national = (
            phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL) if example else ""
        )
        return f"+{phonenumbers.country_code_for_region(region)}", national


def provider_locale(code: str) -> str:
    """What Twilio Verify (``Locale``) and Authy (``locale``) call a catalogue's language: ``de``,
    ``pt-BR``, ``zh-CN`` (both fall back to English for one they do not have)."""
    locale = Locale.parse(code)
    if locale.language == "zh":
        return "zh-HK" if locale.script == "Hant" else "zh-CN"
    return f"{locale.language}-{locale.territory}" if locale.territory else locale.language


def _trusted(text: str) -> Markup:
    # A translation is written by us or by the shop (its catalogues, like its templates): its own
    # markup is kept, and the values put into it are escaped by Markup's %.
    return Markup(text)  # noqa: S704


def _wait(seconds: float) -> timedelta:
    """The wait rounded up to a whole unit of the one Babel will say it in (with threshold 1.5:
    seconds below 90, minutes below 90, hours below 36, then days): Babel rounds to the nearest,
    and a reader told "14 minutes" for 14 min 12 s comes back too early."""
    whole = max(1, math.ceil(seconds))
    for unit, larger in ((86400, 7 * 86400), (3600, 86400), (60, 3600)):
        if whole / unit >= 1.5:
            rounded = math.ceil(whole / unit) * unit
            # Rounded up to 1.5 of the larger unit, Babel would switch to it ("2 hours" for
            # 89 min 59 s): a second less keeps it in this unit, said as the rounded value.
            return timedelta(seconds=rounded if rounded / larger < 1.5 else rounded - 1)
    return timedelta(seconds=whole)


class Languages:
    """Every language the pages speak: the shipped catalogues, each under the shop's own of the same
    language; a language is loaded at its first use."""

    def __init__(self, templates_dir: str | Path | None = None) -> None:
        self._shop = Path(templates_dir) / "locale" if templates_dir else None
        codes = dict.fromkeys([*SHIPPED, *sorted(shop_codes(templates_dir))])
        self.codes = tuple(code for code in codes if valid_code(code))
        # Negotiation compares lower-case tags; the answer is the catalogue's own name.
        self._by_tag = {tag_of(code).lower(): code for code in self.codes}
        self._loaded: dict[str, Language] = {}

    def get(self, code: str) -> Language:
        """The language of a catalogue (``code`` as in :attr:`codes`)."""
        language = self._loaded.get(code)
        if language is None:
            language = self._loaded[code] = Language(code, self._translations(code))
        return language

    def _translations(self, code: str) -> gettext.NullTranslations:
        ours = _catalogue(BUILT_IN, code) if code in SHIPPED else None
        shop = _catalogue(self._shop, code) if self._shop else None
        if shop is not None and ours is not None:
            shop.add_fallback(ours)
        return shop or ours or gettext.NullTranslations()

    def match(self, tags: list[str]) -> str | None:
        """The catalogue for the first of ``tags`` (``de-CH`` finds ``de``), or None (Babel's negotiation)."""
        found = negotiate_locale(tags, list(self._by_tag), sep="-", aliases=ALIASES)
        return self._by_tag.get(found.lower()) if found else None

    def negotiate(
        self,
        fixed: str | None = None,
        chosen: str | None = None,
        accept_language: str | None = None,
    ) -> Language:
        """The interface's ``locale``, else the shop's choice (``locale_from``), else the browser's,
        else English."""
        if fixed:
            return self.get(self.match([fixed.replace("_", "-")]) or DEFAULT)
        if chosen and len(chosen) <= 35 and (code := self.match([chosen.strip().replace("_", "-")])):
            return self.get(code)
        return self.get(self.match(preferred(accept_language)) or DEFAULT)


# The language of a page context built without negotiation (the default of PageContext).
ENGLISH = Language(DEFAULT, gettext.NullTranslations())
