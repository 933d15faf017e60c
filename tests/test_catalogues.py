"""The catalogues are complete and current, and no template holds text outside them.

What the code and the templates hold is extracted here, with Babel and babel.cfg, exactly as
``make extract`` does; every shipped ``.po`` must have each of those texts translated (no text
missing, none stale, none fuzzy, the same placeholders and markup), and each ``.mo`` must be what its
``.po`` compiles to. A template's own text (a text node, or an attribute people read) must come from
``{% trans %}`` or ``_()``: the template source is read with Jinja's lexer, so nothing is rendered.
"""

from __future__ import annotations

import gettext
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tfa_middleware.i18n import BUILT_IN, DOMAIN, SHIPPED
from tfa_middleware.pages.kit import templates

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfa_middleware"
TEMPLATES = PACKAGE / "templates"
TRANSLATED = [code for code in SHIPPED if code != "en"]  # English is the msgids themselves
# Named placeholders (%(wait)s) and the markup a translation must keep.
PLACEHOLDER = re.compile(r"%\(\w+\)s|</?\w+[^>]*>")
# What a reader sees of a tag: its text, and these attributes.
READ_ATTRIBUTES = {"aria-label", "placeholder", "title", "alt"}
LETTER = re.compile(r"[^\W\d_]")
# The body's CSS class (manage.html's "wide") is markup, not text.
CLASS_BLOCK = re.compile(r"{%-?\s*block body_class\s*-?%}.*?{%-?\s*endblock\s*-?%}", re.S)


def extracted() -> Catalog:
    """Every text of the package, as ``make extract`` finds it (babel.cfg, keywords N_ and html)."""
    with (ROOT / "babel.cfg").open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)  # type: ignore[no-untyped-call]
    catalog = Catalog(domain=DOMAIN)
    # Language.html is gettext returning markup: its first argument is a text too.
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "html": None}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(PACKAGE), method_map, options_map, keywords=keywords, strip_comment_tags=True
    ):
        catalog.add(message)
    return catalog


@pytest.fixture(scope="module")
def wanted() -> dict[str, Message]:
    return {_key(m.id): m for m in extracted() if m.id}


def _forms(value: object) -> list[str]:
    """A message's id or string as its list of forms (one, or the plural forms)."""
    if isinstance(value, str):
        return [value]
    return [str(form) for form in value] if isinstance(value, (tuple, list)) else []


def _key(message_id: object) -> str:
    return _forms(message_id)[0]


def _po(code: str) -> Catalog:
    with (BUILT_IN / code / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as file:
        return read_po(file, locale=code)


def catalogue_problems(catalog: Catalog, wanted: dict[str, Message]) -> list[str]:
    """What is wrong with a language's catalogue against the extracted texts."""
    have = {_key(m.id): m for m in catalog if m.id}
    problems = [f"missing: {key!r}" for key in wanted if key not in have]
    problems += [f"stale: {key!r}" for key in have if key not in wanted]
    for key in have.keys() & wanted.keys():
        problems += _message_problems(key, wanted[key], have[key], catalog.num_plurals)
    problems += [f"{m.id!r}: {error}" for m, errors in catalog.check() for error in errors]
    return problems


def _message_problems(key: str, source: Message, message: Message, plurals: int) -> list[str]:
    problems = [f"fuzzy: {key!r}"] if message.fuzzy else []
    if _forms(source.id) != _forms(message.id):
        problems.append(f"singular or plural changed: {key!r}")
    forms = _forms(message.string)
    if len(forms) != (plurals if message.pluralizable else 1) or not all(forms):
        problems.append(f"untranslated: {key!r}")
    # A plural form may leave the number out ("one code"); every other placeholder, and the markup, stay.
    numbers = {"%(count)s", "%(num)s"}
    expected = set(PLACEHOLDER.findall(_forms(source.id)[-1])) - numbers
    problems += [
        f"placeholders or markup differ: {key!r} → {form!r}"
        for form in forms
        if set(PLACEHOLDER.findall(form)) - numbers != expected
    ]
    return problems


def test_the_template_file_holds_what_the_code_holds(wanted: dict[str, Message]) -> None:
    with (BUILT_IN / f"{DOMAIN}.pot").open("rb") as file:
        pot = {_key(m.id) for m in read_po(file) if m.id}
    assert pot == set(wanted), "run `make update` (new or removed texts are not in tfa.pot)"


@pytest.mark.parametrize("code", TRANSLATED)
def test_each_catalogue_translates_every_text_and_no_other(code: str, wanted: dict[str, Message]) -> None:
    problems = catalogue_problems(_po(code), wanted)
    assert not problems, f"{code} (run `make update`, then translate):\n" + "\n".join(problems)


def test_the_catalogue_check_finds_each_kind_of_problem(wanted: dict[str, Message]) -> None:
    catalog = _po("de")
    assert catalogue_problems(catalog, wanted) == []
    catalog.delete("Back")
    catalog.add("Gone from the code", "Nicht mehr im Code")
    catalog["Cancel"].flags.add("fuzzy")
    catalog["Confirm %(phone)s"].string = "Bestätigen"
    catalog["Print"].string = ""
    assert sorted(p.split(":")[0] for p in catalogue_problems(catalog, wanted)) == [
        "fuzzy",
        "missing",
        "placeholders or markup differ",
        "stale",
        "untranslated",
    ]


@pytest.mark.parametrize("code", TRANSLATED)
def test_each_compiled_catalogue_is_its_po(code: str) -> None:
    buffer = io.BytesIO()
    write_mo(buffer, _po(code))
    buffer.seek(0)
    fresh = gettext.GNUTranslations(buffer)
    with (BUILT_IN / code / "LC_MESSAGES" / f"{DOMAIN}.mo").open("rb") as file:
        shipped = gettext.GNUTranslations(file)
    assert shipped._catalog == fresh._catalog, f"{code}: run `make compile`"  # type: ignore[attr-defined]


class _ReadText(HTMLParser):
    """The text a reader sees in literal template markup, and the attributes they hear."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, _tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in READ_ATTRIBUTES and value]

    def handle_data(self, data: str) -> None:
        self.found.append(data)


def untranslated(source: str) -> list[str]:
    """The letters of ``source`` that no {% trans %}, _() or expression produces."""
    literal, depth = [], 0
    for _line, kind, value in templates(None).lex(CLASS_BLOCK.sub("", source)):
        if kind == "name" and value == "trans":
            depth += 1
        elif kind == "name" and value == "endtrans":
            depth -= 1
        elif kind == "data" and not depth:
            literal.append(value)
        elif kind in ("variable_begin", "block_begin"):
            literal.append("\x00")  # an expression: no text of its own
    reader = _ReadText()
    reader.feed("".join(literal))
    reader.close()
    return [text.strip() for text in reader.found if LETTER.search(text.replace("\x00", ""))]


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_no_template_holds_untranslated_text(name: str) -> None:
    assert untranslated((TEMPLATES / name).read_text()) == []


def test_the_template_check_finds_text_outside_the_catalogue() -> None:
    """The check above can fail: literal text, an aria-label, a placeholder."""
    assert untranslated('<p>{{ _("Fine") }}</p><p>Left behind</p>') == ["Left behind"]
    assert untranslated('<button aria-label="Close">{% trans %}Close{% endtrans %}</button>') == ["Close"]
    assert untranslated('<input placeholder="{{ x }} left">') == ["\x00 left"]
    assert untranslated("<p>{% trans n=1 %}{{ n }} day{% pluralize %}{{ n }} days{% endtrans %}</p>") == []


def test_every_template_renders_through_the_i18n_extension() -> None:
    """A {% trans %} without the extension would be a syntax error: every template parses."""
    environment = templates(None)
    for path in TEMPLATES.glob("*.html"):
        environment.parse(path.read_text())
    with pytest.raises(jinja2.TemplateSyntaxError):
        jinja2.Environment(autoescape=True).parse("{% trans %}x{% endtrans %}")
