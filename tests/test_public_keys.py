"""Production mode refuses every signing key published in the project's own files (security
requirement 29), and a scan of those files makes sure no published key is missing from the list."""

from __future__ import annotations

import ast
import copy
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tfa_middleware import ConfigError, settings_from_mapping
from tfa_middleware.public_keys import is_public
from tfa_middleware.testing import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FAKE_SERVICE_SID

ROOT = Path(__file__).resolve().parent.parent
DEMO_KEY = "demo-only-secret-key-change-me-0123456789"
DEMO_SHOP_KEY = "demo-only-shop-secret-change-me-0123456789"
OWN_KEY = "a-key-of-this-shop-alone-7Qm2xV9pL4sK8wR1"
PRODUCTION = {
    "name": "twilio_verify",
    "production_mode": True,
    "account_sid": FAKE_ACCOUNT_SID,
    "auth_token": FAKE_AUTH_TOKEN,
    "service_sid": FAKE_SERVICE_SID,
}


def shop(keys: list[str], shop_key: str = OWN_KEY, production: bool = True) -> dict[str, Any]:
    return {
        "secret_keys": keys,
        "provider": PRODUCTION if production else {"name": "sandbox"},
        "interfaces": {
            "admin": {
                "path_prefix": "/admin",
                "identity": {"from": "starlette_session_cookie", "secret_key": shop_key, "key": "admin_id"},
            }
        },
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data, environ={})
    return caught.value.problems


def test_production_mode_refuses_a_demo_signing_key_by_its_place_in_the_list() -> None:
    [problem] = problems(shop([OWN_KEY, DEMO_KEY]))
    assert problem.startswith("secret_keys: item 1: is a public example key from tfa-middleware's own files")


def test_production_mode_refuses_a_demo_shop_session_key() -> None:
    [problem] = problems(shop([OWN_KEY], shop_key=DEMO_SHOP_KEY))
    assert problem.startswith("interfaces.admin.identity.secret_key: is a public example key")


def test_the_refusal_never_shows_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(shop([DEMO_KEY], shop_key=DEMO_SHOP_KEY), environ={})
    assert DEMO_KEY not in str(caught.value)
    assert DEMO_SHOP_KEY not in str(caught.value)


def test_the_demo_keys_still_load_outside_production_mode() -> None:
    settings = settings_from_mapping(shop([DEMO_KEY], shop_key=DEMO_SHOP_KEY, production=False), environ={})
    assert settings.secret_keys[0].reveal() == DEMO_KEY


def test_the_comparison_is_exact() -> None:
    settings_from_mapping(shop([DEMO_KEY + "x", DEMO_KEY.upper()], shop_key=DEMO_SHOP_KEY[:-1]), environ={})


def test_the_demo_settings_cannot_go_to_production_unchanged() -> None:
    data = yaml.safe_load((ROOT / "demo_app" / "config.yaml").read_text())
    data.pop("templates_dir")  # relative to where the demo starts; not what this test is about
    data["provider"] = PRODUCTION
    assert sorted(p.split(":")[0] for p in problems(data)) == [
        "interfaces.admin.identity.secret_key",
        "interfaces.admin.rp_id",  # the demo's passkeys are localhost's
        "interfaces.customer.identity.secret_key",
        "secret_keys",
    ]
    data["interfaces"]["admin"]["rp_id"] = "shop.example"
    env = {"TFA_SECRET_KEY": OWN_KEY, "SHOP_SECRET": OWN_KEY[::-1]}
    assert settings_from_mapping(copy.deepcopy(data), environ=env).provider.production_mode


# --------------------------------------------------------------------------- the project's own files

# Where the project publishes settings meant to be copied or run as they are. tests/ is left out:
# its keys are fixtures, never offered to a shop as an example.
SCANNED = ("README.md", "config.yaml.example", "demo_app", "benchmarks", "examples", "docs")
_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_SETTING = re.compile(r"""\bsecret_keys?["']?\s*[:=]\s*(.+)""")
_QUOTED = re.compile(r"""["']([^"'\s]+)["']""")
_KEY_NAME = re.compile(r"SECRET|^DEMO_")
_CONSTANT = re.compile(r"[A-Z_][A-Z0-9_]*[),]*")


def scanned_files() -> Iterator[Path]:
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts)


def _resolved(value: str) -> str:
    """A ``${NAME:-default}`` reads as its default (what runs when NAME is unset); ``${NAME}`` as nothing."""
    return _ENV.sub(lambda m: m.group(2) or "", value).strip()


def key_like(value: str) -> bool:
    # A key is one word: not prose after "secret_key:" in a comment, "...", or an f-string.
    return any(c.isalnum() for c in value) and "{" not in value and not any(c.isspace() for c in value)


def keys_in_text(text: str) -> Iterator[str]:
    """YAML, Markdown, templates: the values of ``secret_keys``/``secret_key`` (quoted or in YAML's
    own syntax), the defaults of ``${…SECRET…:-…}`` / ``${…KEY…:-…}``, and any quoted word of 32 or
    more characters that says "secret" or "key"."""
    for line in text.splitlines():
        setting = _SETTING.search(line)
        if setting:
            value = setting.group(1).split(" #")[0]
            if _CONSTANT.fullmatch(value.strip()):
                continue  # Python in a Markdown example (secret_key=SHOP_SECRET): a name, not a key
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = _QUOTED.findall(value)
            for item in parsed if isinstance(parsed, list) else [parsed]:
                if isinstance(item, str):
                    yield item
        for env in _ENV.finditer(line):
            if env.group(2) and re.search("SECRET|KEY", env.group(1)):
                yield env.group(2)
        for word in _QUOTED.findall(line):
            if len(_resolved(word)) >= 32 and re.search("secret|key", word, re.IGNORECASE):
                yield word


def keys_in_python(source: str) -> Iterator[str]:
    """Python: strings bound to a ``…SECRET…`` or ``DEMO_…`` name, passed as ``secret_key(s)=`` or
    under a ``"secret_key(s)"`` dict key, and any string of 32 or more characters saying "secret"
    or "key"."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and _KEY_NAME.search(t.id) for t in targets):
                yield from _strings(node.value)
        elif isinstance(node, ast.keyword) and node.arg in ("secret_key", "secret_keys"):
            yield from _strings(node.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in ("secret_key", "secret_keys"):
                    yield from _strings(value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if len(text) >= 32 and " " not in text and re.search("secret|key", text, re.IGNORECASE):
                yield text


def _strings(value: ast.expr | None) -> list[str]:
    """A string literal, or the string literals of a list or tuple literal (``secret_keys=[…]``)."""
    items = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
    return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]


def published_keys() -> dict[str, str]:
    """Every key-looking value of the scanned files, resolved, with the first file it is in."""
    found: dict[str, str] = {}
    for path in scanned_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binaries hold no example settings
        keys = keys_in_python(text) if path.suffix == ".py" else keys_in_text(text)
        for raw in keys:
            key = _resolved(raw)
            if key and key_like(key):
                found.setdefault(key, str(path.relative_to(ROOT)))
    return found


def test_the_scan_finds_the_keys_it_is_meant_to_find() -> None:
    found = published_keys()
    assert {DEMO_KEY, DEMO_SHOP_KEY} <= set(found)
    assert found[DEMO_KEY] == "demo_app/config.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('secret_keys: ["${TFA_SECRET_KEY:-abc-default-key}"]', ["abc-default-key"]),
        ("secret_keys: [one-key, two-key]  # comment", ["one-key", "two-key"]),
        ("  - secret_key: plain-yaml-value", ["plain-yaml-value"]),
        ("# as identity.secret_key: anyone can sign with it.", []),
        ('secret_keys: ["${TFA_SECRET_KEY}"]', []),
        ("    Middleware(SessionMiddleware, secret_key=SHOP_SECRET),", []),
        ('x = "' + "k" * 20 + "-secret-" + "k" * 10 + '"', ["k" * 20 + "-secret-" + "k" * 10]),
    ],
)
def test_the_scan_reads_the_forms_examples_take(text: str, expected: list[str]) -> None:
    keys = {_resolved(raw) for raw in keys_in_text(text)}
    assert sorted(k for k in keys if k and key_like(k)) == expected


def test_the_scan_reads_python_constants_and_arguments() -> None:
    source = (
        'DEMO_TOKEN = "demo-token-1"\n'
        'SHOP_SECRET: str = "shop-secret-2"\n'
        'ADMIN_KEY = "admin_id"\n'  # a session key name, not a secret
        'app = SessionMiddleware(shop, secret_key="inline-3")\n'
        'config = {"secret_keys": ["listed-4"], "other": "x"}\n'
        'label = f"tfa_{secret}"\n'
    )
    assert sorted(keys_in_python(source)) == ["demo-token-1", "inline-3", "listed-4", "shop-secret-2"]


def test_every_key_published_in_the_projects_files_is_refused_in_production() -> None:
    missing = {key: where for key, where in published_keys().items() if not is_public(key)}
    assert not missing, (
        "these example keys are not in tfa_middleware/public_keys.py (add their SHA-256): "
        + ", ".join(f"{where}: {key!r}" for key, where in sorted(missing.items(), key=lambda kv: kv[1]))
    )


def test_the_package_holds_digests_not_keys() -> None:
    source = (ROOT / "tfa_middleware" / "public_keys.py").read_text()
    for key in published_keys():
        assert key not in source


# --------------------------------------------------------------------------- the demo says so


@pytest.mark.parametrize("variable", ["TFA_SECRET_KEY", "SHOP_SECRET"])
def test_the_demo_warns_when_it_runs_on_a_public_key(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from demo_app.app import create_app

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("TFA_DEMO_DB", str(tmp_path / "demo.sqlite3"))
    monkeypatch.setenv("TFA_SECRET_KEY", OWN_KEY)
    monkeypatch.setenv("SHOP_SECRET", OWN_KEY[::-1])
    caplog.set_level(logging.WARNING, logger="demo_app")
    create_app()
    assert not [r for r in caplog.records if r.name == "demo_app"]
    monkeypatch.delenv(variable)
    create_app()
    [warning] = [r for r in caplog.records if r.name == "demo_app"]
    assert warning.levelno == logging.WARNING
    assert f"{variable} is not set" in warning.getMessage()
