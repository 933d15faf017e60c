"""Settings: a good file loads with typed values and defaults; a bad one is refused with every problem
listed by key path; ${VAR} interpolation; secrets never show."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
import yaml

from tfa_middleware import ConfigError, load_settings, settings_from_mapping
from tfa_middleware.settings import (
    HeaderSource,
    ScopeUserSource,
    Secret,
    Settings,
    StarletteSessionCookieSource,
)

TFA_KEY = "tfa-signing-key-0123456789-abcdefghijklmnopq"
OLD_KEY = "older-signing-key-0123456789-abcdefghijklmnop"
SHOP_SECRET = "shop-session-secret-0123456789-zyxwvutsrq"
PROVIDER_KEY = "provider-api-key-4f7c1e9a2b"
DB_PASSWORD = "hunter2pass"
ENV = {"TFA_KEY": TFA_KEY, "SHOP_SECRET": SHOP_SECRET, "PROVIDER_KEY": PROVIDER_KEY, "DB_PASS": DB_PASSWORD}
ALL_SECRETS = [TFA_KEY, OLD_KEY, SHOP_SECRET, PROVIDER_KEY, DB_PASSWORD]

GOOD_FILE = """
secret_keys:
  - "${TFA_OLD_KEY:-older-signing-key-0123456789-abcdefghijklmnop}"
  - "${TFA_KEY}"
database_url: "postgresql+asyncpg://u:${DB_PASS}@h/db"
trusted_proxies: [10.0.0.0/8, "2001:db8::1"]
provider:
  name: sandbox
  production_mode: false
  api_key: "${PROVIDER_KEY}"
interfaces:
  admin:
    path_prefix: /Admin/
    exempt: [/admin/login, /Admin/Static/]
    identity:
      from: starlette_session_cookie
      secret_key: "${SHOP_SECRET}"
      key: admin_id
      session_id_key: sid
  customer:
    enabled: false
    path_prefix: /account
    pages_path: /account/verify
    proof_cookie: tfa_cust
    proof_max_age_seconds: 3600
    on_missing_phone: skip
    identity: {from: session, key: customer_id}
  partner:
    path_prefix: /
    identity: {from: header, header: X-Remote-User}
"""


def write(tmp_path: Path, text: str, name: str = "tfa.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def good(tmp_path: Path) -> Settings:
    return load_settings(write(tmp_path, GOOD_FILE), environ=ENV)


# --------------------------------------------------------------------------- a good file


def test_good_file_loads_with_typed_values(good: Settings, tmp_path: Path) -> None:
    assert [key.reveal() for key in good.secret_keys] == [OLD_KEY, TFA_KEY]
    assert all(isinstance(key, Secret) for key in good.secret_keys)
    assert good.database_url.reveal() == f"postgresql+asyncpg://u:{DB_PASSWORD}@h/db"
    assert good.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::1/128"),
    )
    assert good.provider.name == "sandbox"
    assert good.provider.production_mode is False
    assert good.provider.api_key is not None
    assert good.provider.api_key.reveal() == PROVIDER_KEY
    assert good.source == str(tmp_path / "tfa.yaml")
    assert list(good.interfaces) == ["admin", "customer", "partner"]

    admin = good.interface("admin")
    assert admin.enabled is True
    assert admin.path_prefix == "/admin"  # lower-cased, no trailing slash
    assert admin.exempt == ("/admin/login", "/admin/static/")  # lower-cased, folder slash kept
    assert admin.identity.source == "starlette_session_cookie"
    assert admin.identity.key == "admin_id"
    assert admin.identity.session_id_key == "sid"
    assert admin.identity.secret_key is not None
    assert admin.identity.secret_key.reveal() == SHOP_SECRET

    customer = good.interface("customer")
    assert customer.enabled is False
    assert customer.pages_path == "/account/verify"
    assert customer.proof_cookie == "tfa_cust"
    assert customer.proof_max_age_seconds == 3600
    assert customer.on_missing_phone == "skip"
    assert customer.identity.source == "session"
    assert customer.identity.key == "customer_id"

    partner = good.interface("partner")
    assert partner.path_prefix == "/"
    assert isinstance(partner.identity, HeaderSource)
    assert partner.identity.header == "X-Remote-User"


def test_good_file_fills_in_defaults(good: Settings) -> None:
    admin = good.interface("admin")
    assert admin.pages_path == "/admin/_2fa"
    assert admin.proof_cookie == "tfa_admin"
    assert admin.proof_max_age_seconds == 43200
    assert admin.on_missing_phone == "enroll"
    assert isinstance(admin.identity, StarletteSessionCookieSource)
    assert admin.identity.cookie == "session"
    # No age check of the shop's session unless asked: the shop's own middleware judges its age,
    # and a stricter one here would read a session the shop still honours as "nobody".
    assert admin.identity.max_age_seconds is None
    assert admin.unidentified == "block"
    assert admin.logout_url is None
    assert good.interface("partner").pages_path == "/_2fa"  # the root prefix gives no '//_2fa'
    assert good.interface("partner").proof_cookie == "tfa_partner"
    assert good.revocation_check_seconds == 10
    assert good.max_form_bytes == 16 * 1024
    assert good.templates_dir is None
    assert good.provider.code_length == 6
    assert good.provider.code_ttl_seconds == 600
    assert good.provider.max_attempts_per_code == 5
    assert good.provider.timeout_seconds == 5.0


def test_minimal_mapping_gets_the_sqlite_default_and_a_single_key() -> None:
    settings = settings_from_mapping(
        {
            "secret_keys": TFA_KEY,
            "interfaces": {"admin": {"path_prefix": "/admin", "identity": {"from": "scope_user"}}},
        },
        environ={},
    )
    assert [k.reveal() for k in settings.secret_keys] == [TFA_KEY]
    assert settings.database_url.reveal() == "sqlite+aiosqlite:///./tfa.sqlite3"
    assert settings.trusted_proxies == ()
    identity = settings.interface("admin").identity
    assert isinstance(identity, ScopeUserSource)
    assert identity.attribute == "identity"
    assert settings.source is None


# --------------------------------------------------------------------------- ${VAR} interpolation


def _admin_prefix(value: str, environ: dict[str, str]) -> str:
    settings = settings_from_mapping(
        {
            "secret_keys": [TFA_KEY],
            "interfaces": {"admin": {"path_prefix": value, "identity": {"from": "scope_user"}}},
        },
        environ=environ,
    )
    return settings.interface("admin").path_prefix


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        pytest.param("${P}", {"P": "/shop-admin"}, "/shop-admin", id="plain"),
        pytest.param("${P:-/fallback}", {}, "/fallback", id="default-when-unset"),
        pytest.param("${P:-/fallback}", {"P": "/from-env"}, "/from-env", id="env-wins-over-default"),
        pytest.param("${P:-/fallback}", {"P": ""}, "/fallback", id="empty-counts-as-unset"),
        pytest.param("/${A}/${B}", {"A": "shop", "B": "admin"}, "/shop/admin", id="two-in-one-string"),
        pytest.param("/x${A}y", {"A": "-"}, "/x-y", id="text-around"),
        pytest.param("/${A}", {"A": "${B}", "B": "nope"}, "/${b}", id="values-are-not-expanded-again"),
        pytest.param("/$A/{A}", {"A": "x"}, "/$a/{a}", id="only-braced-form-is-a-variable"),
    ],
)
def test_interpolation(value: str, environ: dict[str, str], expected: str) -> None:
    assert _admin_prefix(value, environ) == expected


def test_interpolation_reads_the_given_environ_not_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFA_KEY", TFA_KEY)
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(
            {
                "secret_keys": ["${TFA_KEY}"],
                "interfaces": {"admin": {"path_prefix": "/admin", "identity": {"from": "scope_user"}}},
            },
            environ={},
        )
    assert "secret_keys[0]: environment variable TFA_KEY is not set" in exc.value.problems


def test_interpolation_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFA_TEST_ADMIN_PREFIX", "/from-process")
    settings = settings_from_mapping(
        {
            "secret_keys": [TFA_KEY],
            "interfaces": {
                "admin": {"path_prefix": "${TFA_TEST_ADMIN_PREFIX}", "identity": {"from": "scope_user"}}
            },
        }
    )
    assert settings.interface("admin").path_prefix == "/from-process"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"SHOP_SECRET": SHOP_SECRET, "DB_PASS": "x", "PROVIDER_KEY": "x"},
            "secret_keys[1]: environment variable TFA_KEY is not set",
            id="list-item",
        ),
        pytest.param(
            {"TFA_KEY": TFA_KEY, "DB_PASS": "x", "PROVIDER_KEY": "x"},
            "interfaces.admin.identity.secret_key: environment variable SHOP_SECRET is not set",
            id="nested-key",
        ),
        pytest.param(
            {"TFA_KEY": TFA_KEY, "SHOP_SECRET": SHOP_SECRET, "DB_PASS": "", "PROVIDER_KEY": "x"},
            "database_url: environment variable DB_PASS is not set",
            id="set-but-empty",
        ),
    ],
)
def test_missing_env_var_is_reported_with_its_key_path(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, GOOD_FILE), environ=environ)
    assert expected in exc.value.problems


def test_every_missing_env_var_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, GOOD_FILE), environ={})
    reported = [p for p in exc.value.problems if "environment variable" in p]
    assert reported == [
        "secret_keys[1]: environment variable TFA_KEY is not set",
        "database_url: environment variable DB_PASS is not set",
        "provider.api_key: environment variable PROVIDER_KEY is not set",
        "interfaces.admin.identity.secret_key: environment variable SHOP_SECRET is not set",
    ]


# --------------------------------------------------------------------------- bad files

DROP = object()  # in a patch: remove this key from the good base


def base_config() -> dict[str, Any]:
    return {
        "secret_keys": [TFA_KEY],
        "interfaces": {
            "admin": {"path_prefix": "/admin", "identity": {"from": "session", "key": "admin_id"}},
            "customer": {"path_prefix": "/account", "identity": {"from": "session", "key": "customer_id"}},
        },
    }


def patched(patch: dict[str, Any]) -> dict[str, Any]:
    def merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is DROP:
                into.pop(key, None)
            elif isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    data = base_config()
    merge(data, patch)
    return data


def problems_of(tmp_path: Path, data: Any) -> list[str]:
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert exc.value.source == str(path)
    return exc.value.problems


def test_the_base_of_the_bad_cases_is_good(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(base_config()))
    assert set(load_settings(path, environ={}).interfaces) == {"admin", "customer"}


def admin(**changes: Any) -> dict[str, Any]:
    return {"interfaces": {"admin": changes}}


def admin_identity(**changes: Any) -> dict[str, Any]:
    return admin(identity=changes)


TOO_SHORT = (
    "must be at least 32 characters "
    "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
)
TOP_KEYS = (
    "auto_migrate, branding, database_pool, database_url, interfaces, limits, max_form_bytes, on_event, "
    "operations, provider, revocation_check_seconds, secret_keys, templates_dir, trusted_proxies"
)
INTERFACE_KEYS = (
    "enabled, enroll_grace, exempt, factors, identity, locale, locale_from, logout_url, manage, mode, "
    "on_missing_phone, origins, pages_path, path_prefix, phone_change_fresh_seconds, proof_cookie, "
    "proof_max_age_seconds, remember_days, require_factors, rp_id, step_up, unidentified"
)
PROVIDER_KEYS = (
    "account_sid, api_key, api_key_sid, api_url, auth_token, code_length, code_ttl_seconds, email_domain, "
    "email_from_user, max_attempts_per_code, name, production_mode, service_sid, timeout_seconds"
)
SOURCES = (
    "session, starlette_session_cookie, flask_session, scope_user, header, callable, jwt, django_session"
)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        # paths
        pytest.param(
            admin(path_prefix="admin"),
            "interfaces.admin.path_prefix: must start with '/'",
            id="prefix-no-slash",
        ),
        pytest.param(
            admin(path_prefix="/shop/../admin"),
            "interfaces.admin.path_prefix: must not contain '//', '/./' or '/../'",
            id="prefix-dot-dot",
        ),
        pytest.param(
            admin(path_prefix="/admin?x=1"),
            "interfaces.admin.path_prefix: must be a plain path "
            "(no spaces, control characters, '\\', '?', '#', '%')",
            id="prefix-query",
        ),
        pytest.param(
            admin(path_prefix=DROP), "interfaces.admin.path_prefix: is required", id="prefix-missing"
        ),
        pytest.param(
            admin(pages_path="/_2fa"),
            "interfaces.admin.pages_path: must be below path_prefix '/admin', e.g. '/admin/_2fa'",
            id="pages-outside-prefix",
        ),
        pytest.param(
            admin(pages_path="/administrator/_2fa"),
            "interfaces.admin.pages_path: must be below path_prefix '/admin', e.g. '/admin/_2fa'",
            id="pages-in-a-sibling-prefix",
        ),
        pytest.param(
            admin(exempt=["/admin/login", "/login"]),
            "interfaces.admin.exempt[1]: '/login' is outside path_prefix '/admin'",
            id="exempt-outside-prefix",
        ),
        pytest.param(
            admin(exempt=["/administrator"]),
            "interfaces.admin.exempt[0]: '/administrator' is outside path_prefix '/admin'",
            id="exempt-in-a-sibling-prefix",
        ),
        pytest.param(
            admin(exempt=["/admin/"]),
            "interfaces.admin.exempt[0]: exempting the whole prefix disables the interface; "
            "use enabled: false",
            id="exempt-equals-prefix",
        ),
        pytest.param(
            admin(exempt=["/ADMIN"]),
            "interfaces.admin.exempt[0]: exempting the whole prefix disables the interface; "
            "use enabled: false",
            id="exempt-equals-prefix-other-case",
        ),
        pytest.param(
            admin(exempt=["admin/login"]),
            "interfaces.admin.exempt[0]: must start with '/'",
            id="exempt-no-slash",
        ),
        pytest.param(
            {"interfaces": {"customer": {"path_prefix": "/ADMIN/"}}},
            "interfaces.customer.path_prefix: '/admin' is already used by interfaces.admin",
            id="duplicate-prefix",
        ),
        # unknown keys
        pytest.param(
            {"secret_key": TFA_KEY},
            f"secret_key: unknown key (expected one of: {TOP_KEYS})",
            id="unknown-top-level-key",
        ),
        pytest.param(
            admin(path_prefix=DROP, path_prefx="/admin"),
            f"interfaces.admin.path_prefx: unknown key (expected one of: {INTERFACE_KEYS})",
            id="interface-key-typo",
        ),
        pytest.param(
            admin(name="shop"),
            f"interfaces.admin.name: unknown key (expected one of: {INTERFACE_KEYS})",
            id="interface-name-is-its-key",
        ),
        pytest.param(
            {"provider": {"api_secret": "x"}},
            f"provider.api_secret: unknown key (expected one of: {PROVIDER_KEYS})",
            id="unknown-provider-key",
        ),
        pytest.param(
            admin_identity(cookie="session"),
            "interfaces.admin.identity.cookie: is not used with from: session "
            "(expected: key, session_id_key, roles_key)",
            id="identity-key-of-another-source",
        ),
        pytest.param(
            admin_identity(**{"from": "scope_user", "key": "admin_id"}),
            "interfaces.admin.identity.key: is not used with from: scope_user (expected: attribute, require)",
            id="identity-key-with-scope-user",
        ),
        # identity
        pytest.param(
            admin_identity(**{"from": "sesion"}),
            f"interfaces.admin.identity.from: must be one of {SOURCES}, got 'sesion'",
            id="identity-from-typo",
        ),
        pytest.param(
            admin(identity=DROP),
            "interfaces.admin.identity: is required, e.g. {from: starlette_session_cookie, cookie: session, "
            "secret_key: ${SHOP_SECRET}, key: user_id}",
            id="identity-missing",
        ),
        pytest.param(
            admin_identity(key=DROP), "interfaces.admin.identity.key: is required", id="session-no-key"
        ),
        pytest.param(
            admin_identity(**{"from": "starlette_session_cookie"}),
            "interfaces.admin.identity.secret_key: is required",
            id="cookie-no-secret",
        ),
        pytest.param(
            admin_identity(**{"from": "callable", "key": DROP, "path": "myshop.auth.current_admin"}),
            "interfaces.admin.identity.path: must look like package.module:function",
            id="callable-path-malformed",
        ),
        pytest.param(
            admin_identity(**{"from": "header", "key": DROP, "header": "X-Remote-User"}),
            "interfaces.admin.identity: from: header needs trusted_proxies "
            "(the addresses allowed to set that header)",
            id="header-without-trusted-proxies",
        ),
        # wrong types
        pytest.param(
            admin(enabled="true"),
            "interfaces.admin.enabled: expected true or false, got a string",
            id="bool-str",
        ),
        pytest.param(
            {"provider": {"production_mode": "no"}},
            "provider.production_mode: expected true or false, got a string",
            id="provider-bool-str",
        ),
        pytest.param(
            {"provider": ["sandbox"]}, "provider: expected a mapping, got a list", id="list-for-mapping"
        ),
        pytest.param(
            {"interfaces": {"admin": ["/admin"]}},
            "interfaces.admin: expected a mapping, got a list",
            id="interface-list-for-mapping",
        ),
        pytest.param(
            admin(identity="session"),
            "interfaces.admin.identity: expected a mapping, got a string",
            id="identity-str-for-mapping",
        ),
        pytest.param(
            {"interfaces": ["admin"]},
            "interfaces: expected a mapping of interface names, got a list",
            id="interfaces-list",
        ),
        pytest.param(
            admin(exempt="/admin/login"),
            "interfaces.admin.exempt: expected a list, got a string",
            id="exempt-str",
        ),
        pytest.param(
            admin(exempt=["/admin/login", 7]),
            "interfaces.admin.exempt: item 1: expected a string, got a number",
            id="exempt-item-number",
        ),
        pytest.param(
            {"revocation_check_seconds": "10"},
            "revocation_check_seconds: expected a number, got a string",
            id="number-str",
        ),
        pytest.param(
            admin(proof_max_age_seconds=True),
            "interfaces.admin.proof_max_age_seconds: expected a whole number, got a boolean",
            id="int-bool",
        ),
        pytest.param(
            admin(proof_max_age_seconds=3600.5),
            "interfaces.admin.proof_max_age_seconds: expected a whole number, got a number",
            id="int-float",
        ),
        pytest.param(
            {"provider": {"code_ttl_seconds": 900}},
            "provider.code_ttl_seconds: must be between 60 and 600, got 900",
            id="code-ttl-over-ten-minutes",
        ),
        pytest.param(
            admin(on_missing_phone="allow"),
            "interfaces.admin.on_missing_phone: must be one of enroll, skip, got 'allow'",
            id="choice",
        ),
        pytest.param(
            admin(proof_cookie="__Host-tfa"),
            "interfaces.admin.proof_cookie: must be 1-64 letters, digits, '_' or '-' and not start with '__'",
            id="proof-cookie-name",
        ),
        pytest.param(
            {"interfaces": {"Admin": {"path_prefix": "/x", "identity": {"from": "scope_user"}}}},
            "interfaces.Admin: interface names are lower-case letters, digits and '_'",
            id="interface-name",
        ),
        # secrets
        pytest.param({"secret_keys": ["short"]}, f"secret_keys: item 0: {TOO_SHORT}", id="secret-too-short"),
        pytest.param(
            {"secret_keys": [TFA_KEY, "x" * 31]},
            f"secret_keys: item 1: {TOO_SHORT}",
            id="second-secret-short",
        ),
        pytest.param({"secret_keys": []}, "secret_keys: needs at least one key", id="no-secret"),
        pytest.param({"secret_keys": DROP}, "secret_keys: is required", id="secret-missing"),
        pytest.param(
            {"secret_keys": 12345678901234567890123456789012345},
            "secret_keys: expected a list, got a number",
            id="secret-number",
        ),
        # provider, database, proxies
        pytest.param(
            {"provider": {"production_mode": True}},
            "provider.production_mode: the sandbox provider never sends anything; "
            "set production_mode: false, or choose the authy or twilio_verify provider",
            id="sandbox-in-production",
        ),
        pytest.param(
            {"provider": {"name": "nexmo"}},
            "provider.name: must be one of sandbox, authy, twilio_verify, got 'nexmo'",
            id="provider-unknown",
        ),
        pytest.param(
            {"provider": {"api_url": "ftp://api.example"}},
            "provider.api_url: must be an http:// or https:// URL",
            id="provider-url",
        ),
        pytest.param(
            {"database_url": "mysql+aiomysql://u@h/db"},
            "database_url: driver 'mysql+aiomysql' is not supported "
            "(use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB)",
            id="database-driver",
        ),
        pytest.param(
            {"database_url": "sqlite:///./tfa.sqlite3"},
            "database_url: driver 'sqlite' is not supported "
            "(use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB)",
            id="database-sync-driver",
        ),
        pytest.param(
            {"database_url": "not a url"},
            "database_url: is not a database URL (expected e.g. sqlite+aiosqlite:///./tfa.sqlite3)",
            id="database-not-a-url",
        ),
        pytest.param(
            {"trusted_proxies": ["10.0.0.0/8", "proxy.internal"]},
            "trusted_proxies: 'proxy.internal' is not an IP address or network",
            id="bad-trusted-proxy",
        ),
        pytest.param(
            {"trusted_proxies": "10.0.0.1"},
            "trusted_proxies: expected a list, got a string",
            id="trusted-proxy-not-a-list",
        ),
    ],
)
def test_bad_file_is_refused_with_the_key_path(tmp_path: Path, patch: dict[str, Any], expected: str) -> None:
    assert expected in problems_of(tmp_path, patched(patch))


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    data = patched(
        {
            "secret_keys": ["short"],
            "database_url": "mysql://u@h/db",
            "colour": "blue",
            "provider": {"production_mode": True},
            "interfaces": {
                "admin": {"path_prefix": "admin"},
                "customer": {"exempt": ["/login"]},
            },
        }
    )
    assert sorted(problems_of(tmp_path, data)) == sorted(
        [
            f"secret_keys: item 0: {TOO_SHORT}",
            "database_url: driver 'mysql' is not supported "
            "(use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB)",
            f"colour: unknown key (expected one of: {TOP_KEYS})",
            "provider.production_mode: the sandbox provider never sends anything; "
            "set production_mode: false, or choose the authy or twilio_verify provider",
            "interfaces.admin.path_prefix: must start with '/'",
            "interfaces.customer.exempt[0]: '/login' is outside path_prefix '/account'",
        ]
    )


def test_independent_problems_in_one_interface_are_all_reported(tmp_path: Path) -> None:
    # A type error must not hide the pages_path check: the admin would need two rounds to fix the file.
    problems = problems_of(tmp_path, patched(admin(enabled="yes", pages_path="/_2fa")))
    assert "interfaces.admin.enabled: expected true or false, got a string" in problems
    assert "interfaces.admin.pages_path: must be below path_prefix '/admin', e.g. '/admin/_2fa'" in problems


def test_empty_interfaces_mapping_is_reported_sensibly(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {**base_config(), "interfaces": {}})
    [line] = [p for p in problems if p.startswith("interfaces:")]
    assert "got a mapping" not in line  # "expected a mapping ..., got a mapping" tells the admin nothing


def test_a_duplicated_key_is_refused_not_silently_overwritten(tmp_path: Path) -> None:
    # YAML parsers keep the last of two equal keys: the first admin interface would vanish unprotected.
    text = f"""
secret_keys: ["{TFA_KEY}"]
interfaces:
  admin:
    path_prefix: /admin
    identity: {{from: session, key: admin_id}}
  admin:
    path_prefix: /vendor
    identity: {{from: session, key: vendor_id}}
"""
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text), environ={})
    assert any("admin" in p for p in exc.value.problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "secret_keys: [abc\ninterfaces:\n  admin: {}\n",
            "line 2, column 11: expected ',' or ']', but got ':'",
            id="unclosed-list",
        ),
        pytest.param(
            "interfaces:\n  admin:\n    path_prefix: /admin\n   identity: {from: session}\n",
            "line 4, column 4: expected <block end>, but found '<block mapping start>'",
            id="bad-indent",
        ),
        pytest.param(
            "interfaces:\n\t- admin\n",
            "line 2, column 1: found character '\\t' that cannot start any token",
            id="tab",
        ),
    ],
)
def test_bad_yaml_syntax_is_reported_with_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text), environ={})
    assert exc.value.problems == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "", ["secret_keys: is required", "interfaces: is required (at least one interface, e.g. admin)"]
        ),
        pytest.param(
            "- admin\n",
            [
                "<root>: expected a mapping, got a list",
                "secret_keys: is required",
                "interfaces: is required (at least one interface, e.g. admin)",
            ],
        ),
    ],
    ids=["empty-file", "list-file"],
)
def test_a_file_without_a_mapping(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text), environ={})
    assert exc.value.problems == expected


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(tmp_path / "nope.yaml")
    assert missing.value.problems == ["cannot read the file: No such file or directory"]
    assert str(tmp_path / "nope.yaml") in str(missing.value)

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("secret_keys: ['cl\xe9']\n".encode("latin-1"))
    with pytest.raises(ConfigError) as binary:
        load_settings(latin1)
    assert binary.value.problems == ["the file is not UTF-8 text"]


def test_config_error_lists_each_problem_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(patched({"colour": "blue", "provider": {"name": "x"}})))
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    lines = str(exc.value).splitlines()
    assert lines[0] == f"invalid configuration in {path}:"
    assert lines[1:] == [f"  - {p}" for p in exc.value.problems]
    assert len(lines) == 3


# --------------------------------------------------------------------------- secrets never show


def test_secrets_never_show_in_repr_str_or_describe(good: Settings) -> None:
    described = good.describe()
    shown = [repr(good), str(good), repr(good.interfaces), str(described), json.dumps(described)]
    for text in shown:
        for secret in ALL_SECRETS:
            assert secret not in text
    assert described["secret_keys"] == ["**********", "**********"]
    assert described["database_url"] == "postgresql+asyncpg://u:**********@h/db"
    assert described["provider"]["api_key"] == "**********"
    assert described["interfaces"]["admin"]["identity"]["secret_key"] == "**********"
    assert described["interfaces"]["admin"]["path_prefix"] == "/admin"  # and it still describes


def test_secret_shows_stars_and_reveals_on_request() -> None:
    secret = Secret(TFA_KEY)
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == f"{secret}" == "**********"
    assert secret.reveal() == TFA_KEY
    assert secret == Secret(TFA_KEY)
    assert secret != Secret(OLD_KEY)


def test_secrets_never_show_in_a_config_error(tmp_path: Path) -> None:
    text = GOOD_FILE + "colour: blue\n"
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text), environ=ENV)
    assert exc.value.problems == [f"colour: unknown key (expected one of: {TOP_KEYS})"]
    for secret in ALL_SECRETS:
        assert secret not in str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"postgresql+asyncpg://u:{DB_PASSWORD}@h/db", id="userinfo"),
        pytest.param(f"postgresql+asyncpg://u:{DB_PASSWORD}@h:5433/db?ssl=require", id="port-and-query"),
        # asyncpg takes connect() arguments from the query: this is a real password too.
        pytest.param(f"postgresql+asyncpg://u@h/db?password={DB_PASSWORD}", id="password-in-query"),
    ],
)
def test_database_password_never_shows(url: str) -> None:
    settings = settings_from_mapping(
        {
            "secret_keys": [TFA_KEY],
            "database_url": url,
            "interfaces": {"admin": {"path_prefix": "/admin", "identity": {"from": "scope_user"}}},
        },
        environ={},
    )
    assert settings.database_url.reveal() == url
    for text in (repr(settings), str(settings), json.dumps(settings.describe())):
        assert DB_PASSWORD not in text


# --------------------------------------------------------------------------- SMS regions (requirement 28)


def limits_of(tmp_path: Path, limits: dict[str, Any]) -> tuple[str, ...]:
    path = write(tmp_path, yaml.safe_dump(patched({"limits": limits})))
    return load_settings(path, environ={}).limits.allowed_regions


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        pytest.param({"allowed_regions": ["us", "Ca"]}, ("US", "CA"), id="regions-upper-cased"),
        pytest.param({"allowed_regions": ["*"]}, ("*",), id="every-region"),
        pytest.param({"allowed_regions": ["DE", "de"]}, ("DE",), id="duplicates-once"),
        # A calling code of one region only is the same as that region.
        pytest.param({"allowed_country_codes": ["49", "+33", 351]}, ("DE", "FR", "PT"), id="unshared-codes"),
        pytest.param({"allowed_country_codes": ["*"]}, ("*",), id="every-code"),
        pytest.param({"allowed_regions": None, "allowed_country_codes": ["49"]}, ("DE",), id="null-is-unset"),
    ],
)
def test_allowed_regions_load(tmp_path: Path, limits: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert limits_of(tmp_path, limits) == expected


def test_the_default_regions_are_the_former_calling_codes_main_regions(tmp_path: Path) -> None:
    regions = limits_of(tmp_path, {})
    former = ["1", "31", "32", "33", "34", "39", "41", "43", "44", "45", "46", "47", "49", "61", "64"]
    former += ["351", "353", "358"]
    # Each former code gives its main region (+1: the US, and Canada beside it), nothing it shares.
    main = {phonenumbers.region_code_for_country_code(int(code)) for code in former}
    assert set(regions) == main | {"CA"}
    assert not {"JM", "VG", "PR", "GG", "IM", "JE", "SJ", "AX", "CC", "CX", "VA"} & set(regions)


SHARED_CODES = sorted(
    code
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    if len(set(phonenumbers.region_codes_for_country_code(code)) & phonenumbers.SUPPORTED_REGIONS) > 1
)


def test_the_shared_calling_codes_include_the_reviewers_examples() -> None:
    assert {1, 7, 44, 47, 61, 212, 262, 290, 358, 590, 599} <= set(SHARED_CODES)


@pytest.mark.parametrize("code", SHARED_CODES)
def test_a_shared_calling_code_is_refused_naming_its_regions(tmp_path: Path, code: int) -> None:
    [problem] = problems_of(tmp_path, patched({"limits": {"allowed_country_codes": ["31", str(code)]}}))
    regions = phonenumbers.region_codes_for_country_code(code)
    assert problem.startswith(f"limits.allowed_country_codes[1]: +{code} is shared by ")
    assert "list the ones you mean under limits.allowed_regions instead" in problem
    for region in regions:
        assert region in problem


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        pytest.param(
            {"allowed_country_codes": ["1"]},
            "limits.allowed_country_codes[0]: +1 is shared by 25 regions (US, AG, AI, AS, BB, BM, BS, CA, "
            "DM, DO, GD, GU, JM, KN, KY, LC, MP, MS, PR, SX, TC, TT, VC, VG, VI): list the ones you mean "
            "under limits.allowed_regions instead, e.g. allowed_regions: [US, CA]",
            id="plus-1",
        ),
        pytest.param(
            {"allowed_regions": ["US"], "allowed_country_codes": ["49"]},
            "limits.allowed_country_codes: set either allowed_regions or allowed_country_codes, not both",
            id="both-keys",
        ),
        pytest.param(
            {"allowed_regions": ["US", "XX"]},
            "limits.allowed_regions[1]: 'XX' is not a region phonenumbers knows "
            "(ISO 3166-1 alpha-2, e.g. US, GB, DE)",
            id="unknown-region",
        ),
        pytest.param(
            {"allowed_regions": ["UK"]},
            "limits.allowed_regions[0]: 'UK' is not a region phonenumbers knows "
            "(ISO 3166-1 alpha-2, e.g. US, GB, DE); the United Kingdom is GB",
            id="uk-is-gb",
        ),
        pytest.param(
            {"allowed_regions": ["001"]},
            "limits.allowed_regions[0]: '001' is not a region phonenumbers knows "
            "(ISO 3166-1 alpha-2, e.g. US, GB, DE)",
            id="non-geographic",
        ),
        pytest.param(
            {"allowed_regions": []},
            'limits.allowed_regions: needs at least one region (or "*" for every region)',
            id="no-regions",
        ),
        pytest.param(
            {"allowed_regions": ["SE", False]},
            'limits.allowed_regions[1]: got false, not a region: quote the codes, e.g. ["NO"]',
            id="unquoted-norway",
        ),
        pytest.param(
            {"allowed_regions": "US"}, "limits.allowed_regions: expected a list, got a string", id="str"
        ),
        pytest.param(
            {"allowed_regions": [1]},
            "limits.allowed_regions: item 0: expected a string, got a number",
            id="int",
        ),
        pytest.param(
            {"allowed_country_codes": ["49", "999"]},
            "limits.allowed_country_codes[1]: '999' is not a country calling code",
            id="unknown-code",
        ),
        pytest.param(
            {"allowed_country_codes": ["800"]},
            "limits.allowed_country_codes[0]: '800' is not a country calling code",
            id="non-geographic-code",
        ),
        pytest.param(
            {"allowed_country_codes": ["12a"]},
            "limits.allowed_country_codes[0]: '12a' is not a country calling code (1 to 3 digits, or \"*\")",
            id="not-digits",
        ),
    ],
)
def test_bad_allowed_regions_are_refused_with_the_key_path(
    tmp_path: Path, limits: dict[str, Any], expected: str
) -> None:
    problems = problems_of(tmp_path, patched({"limits": limits}))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_manager_reaches_only_their_own_interface_unless_the_settings_say_more(tmp_path: Path) -> None:
    plain = load_settings(write(tmp_path, yaml.safe_dump(base_config())), environ={})
    assert plain.interface("admin").manage_interfaces == ("admin",)
    assert plain.interface("customer").manage_interfaces == ("customer",)
    wider = patched({"interfaces": {"admin": {"manage": {"interfaces": ["admin", "customer"]}}}})
    settings = load_settings(write(tmp_path, yaml.safe_dump(wider), "wider.yaml"), environ={})
    assert settings.interface("admin").manage_interfaces == ("admin", "customer")
    assert settings.describe()["interfaces"]["admin"]["manage"]["interfaces"] == ["admin", "customer"]


@pytest.mark.parametrize(
    ("manage", "expected"),
    [
        (
            {"interfaces": ["admin", "shop"]},
            "interfaces.admin.manage.interfaces: unknown interface 'shop' (configured: admin, customer)",
        ),
        ({"interfaces": []}, "interfaces.admin.manage.interfaces: must name at least one interface"),
        ({"interfaces": "customer"}, "interfaces.admin.manage.interfaces: expected a list, got a string"),
    ],
)
def test_manage_interfaces_must_name_configured_interfaces(
    tmp_path: Path, manage: dict[str, Any], expected: str
) -> None:
    assert expected in problems_of(tmp_path, patched({"interfaces": {"admin": {"manage": manage}}}))


def test_each_identity_source_is_its_own_model_with_only_its_keys(good: Settings) -> None:
    from tfa_middleware.settings import HeaderSource, SessionSource, StarletteSessionCookieSource

    admin, customer, partner = (good.interface(n).identity for n in ("admin", "customer", "partner"))
    assert isinstance(admin, StarletteSessionCookieSource)
    assert admin.secret_key.reveal() == SHOP_SECRET
    assert isinstance(customer, SessionSource)
    assert not hasattr(customer, "secret_key")
    assert isinstance(partner, HeaderSource)
    assert not hasattr(partner, "key")


def test_settings_are_immutable(good: Settings) -> None:
    with pytest.raises(ValueError, match="frozen"):
        good.interface("admin").path_prefix = "/"  # type: ignore[misc]


# --------------------------------------------------------------------------- edges of the value checks


def loaded(**sections: Any) -> Settings | list[str]:
    """The base file with these sections; its settings, or the problems it is refused with."""
    try:
        return settings_from_mapping({**base_config(), **sections}, environ={})
    except ConfigError as exc:
        return exc.problems


def regions_of(**limits: Any) -> tuple[str, ...]:
    settings = loaded(limits=limits)
    assert isinstance(settings, Settings), settings
    return settings.limits.allowed_regions


def test_a_region_list_is_read_up_to_its_star() -> None:
    uk = "'uk' is not a region phonenumbers knows (ISO 3166-1 alpha-2, e.g. US, GB, DE)"
    problems = loaded(limits={"allowed_regions": ["uk", " us ", "*", "XX"]})
    assert problems == [f"limits.allowed_regions[0]: {uk}; the United Kingdom is GB"]
    assert regions_of(allowed_regions=["us", "*", "XX"]) == ("*",)
    assert regions_of(allowed_regions=[" gb", "us", "GB"]) == ("GB", "US")


def test_a_calling_code_list_is_read_up_to_its_star() -> None:
    problems = loaded(limits={"allowed_country_codes": ["+44", 999, "*", "abc"]})
    assert isinstance(problems, list)
    assert [p.partition(":")[0] for p in problems] == [f"limits.allowed_country_codes[{i}]" for i in (0, 1)]
    assert problems[1] == "limits.allowed_country_codes[1]: '999' is not a country calling code"
    assert regions_of(allowed_country_codes=["31", "+31", 49]) == ("NL", "DE")
    assert regions_of(allowed_country_codes=["31", "*", "abc"]) == ("*",)


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ({"api_url": " https://api.example.com// "}, ("api_url", "https://api.example.com")),
        ({"email_domain": "Users.Example.COM"}, ("email_domain", "users.example.com")),
    ],
)
def test_provider_values_are_normalised(provider: dict[str, Any], expected: tuple[str, str]) -> None:
    settings = loaded(provider=provider)
    assert isinstance(settings, Settings)
    assert getattr(settings.provider, expected[0]) == expected[1]


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"provider": {"api_url": "https://"}}, ["provider.api_url: must be an http:// or https:// URL"]),
        ({"branding": {"title": "Shop\x7f"}}, ["branding.title: must be one line of at most 80 characters"]),
        (
            {"provider": {"name": "twilio_verify", "production_mode": True, "auth_token": ""}},
            [
                f"provider.{key}: is required with name: twilio_verify and production_mode: true"
                for key in ("account_sid", "auth_token", "service_sid")
            ],
        ),
        (
            {"provider": {"production_mode": True, "api_url": "http://api.example.com"}},
            [
                "provider.production_mode: the sandbox provider never sends anything; set production_mode: "
                "false, or choose the authy or twilio_verify provider"
            ],
        ),
    ],
)
def test_edges_of_the_value_checks(sections: dict[str, Any], expected: list[str]) -> None:
    assert loaded(**sections) == expected
