"""``tfa-middleware doctor`` and check-config's import check: what the middleware makes of a logged-in
browser, said in plain words, with no secret and no cookie value in the output."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ADMIN_PHONE, FakeClock
from tests.helpers import SHOP_SECRET, TFA_KEY, Cli
from tests.sessions import OTHER_SECRET, cookie_signed_at, real_session_cookie
from tfa_middleware import TwoFactor, load_settings
from tfa_middleware.cli import main
from tfa_middleware.store import Store

CART = "cart-value-never-printed"
COOKIE_IDENTITY = f'{{from: starlette_session_cookie, secret_key: "{SHOP_SECRET}", key: admin_id}}'
# Each interface setting below is the safe choice; a test changes one and expects its warning.
SAFE = "exempt: [/admin/login]\n    logout_url: /admin/logout"


def config(
    tmp_path: Path,
    identity: str = COOKIE_IDENTITY,
    iface: str = SAFE,
    top: str = "",
    provider: str = "",
    more: str = "",
) -> Path:
    path = tmp_path / "tfa.yaml"
    path.write_text(
        f"""
secret_keys: ["{TFA_KEY}"]
database_url: "sqlite+aiosqlite:///{tmp_path / "tfa.sqlite3"}"
{top}
{provider or "provider: {name: authy, production_mode: true, api_key: authy-key-never-printed}"}
interfaces:
  admin:
    path_prefix: /admin
    {iface}
    identity: {identity}
{more}
""",
        encoding="utf-8",
    )
    return path


def cookie_header(session: dict[str, object], secret: str = SHOP_SECRET) -> tuple[str, str]:
    """A browser's Cookie header with a real Starlette session cookie, and that cookie's value."""
    value = asyncio.run(real_session_cookie(session, secret=secret))
    return f"csrftoken=tok-never-printed; session={value}", value


def doctor(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, str]:
    code = main(["doctor", "--config", str(path), *args])
    out, err = capsys.readouterr()
    assert err == ""
    for secret in (TFA_KEY, SHOP_SECRET, OTHER_SECRET, "authy-key-never-printed", CART, "tok-never-printed"):
        assert secret not in out
    return code, out


def seed_phone(path: Path, user_id: str) -> None:
    async def seed() -> None:
        service = TwoFactor.from_settings(load_settings(path), clock=FakeClock())
        try:
            await service.set_phone("admin", user_id, *ADMIN_PHONE, confirmed=True)
        finally:
            await service.close()

    asyncio.run(seed())


def create_tables(path: Path) -> None:
    async def create() -> None:
        store = Store(load_settings(path).database_url.reveal())
        try:
            await store.upgrade_schema()
        finally:
            await store.close()

    asyncio.run(create())


# --------------------------------------------------------------------------- starlette_session_cookie


def test_a_real_session_cookie_is_read_step_by_step(cli: Cli, tmp_path: Path) -> None:
    path = config(tmp_path)
    seed_phone(path, "alice")
    header, value = cookie_header({"admin_id": "alice", "cart": CART})
    result = cli("doctor", "--config", str(path), "--cookie", header, "--path", "/admin/orders")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "  [ok] the browser sent the cookie 'session' (identity.cookie)" in lines
    assert "  [ok] its signature matches identity.secret_key" in lines
    assert "  [ok] the session holds identity.key 'admin_id'" in lines
    assert "  => user alice of admin would be challenged" in lines
    assert "[NO]" not in result.stdout
    assert "Warnings:" not in result.stdout
    assert lines[-1] == "Nothing is wrong."
    for secret in (value, value.split(".")[-1], TFA_KEY, SHOP_SECRET, CART, "tok-never-printed"):
        assert secret not in result.stdout


def test_a_user_without_a_phone_would_be_asked_to_enroll(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    create_tables(path)
    header, _ = cookie_header({"admin_id": "bob"})
    code, out = doctor(capsys, path, "--cookie", header)
    assert code == 0
    assert "  => user bob of admin has no second factor yet: would be asked to enroll" in out.splitlines()


def test_without_a_database_doctor_says_so_and_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    header, _ = cookie_header({"admin_id": "alice"})
    code, out = doctor(capsys, path, "--cookie", f"Cookie: {header}")  # pasted with its name
    assert code == 0
    assert "user alice of admin would be challenged, or asked to enroll (the database file" in out
    assert not (tmp_path / "tfa.sqlite3").exists()  # a diagnosis creates nothing


@pytest.mark.parametrize(
    ("identity", "secret", "expected"),
    [
        pytest.param(
            COOKIE_IDENTITY,
            OTHER_SECRET,
            "  [NO] its signature does not match identity.secret_key -- a different or rotated secret?",
            id="wrong-secret",
        ),
        pytest.param(
            f'{{from: starlette_session_cookie, secret_key: "{SHOP_SECRET}", key: user_id}}',
            SHOP_SECRET,
            "  [NO] the cookie 'session' holds no 'user_id' (its keys: admin_id, cart): is identity.key",
            id="wrong-key",
        ),
        pytest.param(
            f'{{from: starlette_session_cookie, cookie: shop, secret_key: "{SHOP_SECRET}", key: admin_id}}',
            SHOP_SECRET,
            "  [NO] the browser sent no cookie 'shop' (it sent csrftoken, session): is identity.cookie",
            id="wrong-cookie-name",
        ),
    ],
)
def test_a_cookie_that_is_not_read_as_a_user_is_named_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], identity: str, secret: str, expected: str
) -> None:
    header, value = cookie_header({"admin_id": "alice", "cart": CART}, secret=secret)
    code, out = doctor(capsys, config(tmp_path, identity=identity), "--cookie", header)
    assert code == 1
    assert any(line.startswith(expected) for line in out.splitlines()), out
    assert "user alice" not in out
    assert out.splitlines()[-1] == "Something is wrong: see the [NO] lines above."
    assert value not in out
    assert value.split(".")[-1] not in out


def test_a_cookie_older_than_max_age_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = cookie_signed_at(monkeypatch, int(time.time()) - 3600, {"admin_id": "alice"}, SHOP_SECRET)
    path = config(tmp_path, identity=COOKIE_IDENTITY.replace("}", ", max_age_seconds: 600}"))
    code, out = doctor(capsys, path, "--cookie", f"session={value}")
    assert code == 1
    assert "  [ok] its signature matches identity.secret_key" in out
    assert "  [NO] it is older than identity.max_age_seconds (600 s)" in out
    assert value not in out


def test_a_logged_out_browser_fails_and_a_missing_cookie_alone_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path)
    header, _ = cookie_header({"cart": CART})
    code, out = doctor(capsys, path, "--cookie", header)
    assert code == 1
    assert "  [NO] the session is empty" not in out  # it holds a cart: the key is what is missing
    assert "holds no 'admin_id' (its keys: cart)" in out
    code, out = doctor(capsys, path)
    assert code == 0
    assert "  [--] no cookie 'session' (no --cookie given)" in out.splitlines()


def test_a_browser_logged_in_to_one_interface_is_nobody_on_another_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = COOKIE_IDENTITY.replace("admin_id", "customer_id")
    settings = SAFE.replace("admin", "account")
    more = f"  customer:\n    path_prefix: /account\n    {settings}\n    identity: {customer}"
    path = config(tmp_path, more=more)
    header, _ = cookie_header({"admin_id": "alice", "cart": CART})
    code, out = doctor(capsys, path, "--cookie", header)
    assert code == 0
    assert "  => user alice of admin would be challenged, or asked to enroll" in out
    assert "  [--] the cookie 'session' holds no 'customer_id' (its keys: admin_id, cart)" in out
    assert "[NO]" not in out
    code, out = doctor(capsys, path, "--cookie", header, "--path", "/account/orders")  # asked about one
    assert code == 1
    assert "  [NO] the cookie 'session' holds no 'customer_id' (its keys: admin_id, cart)" in out
    assert "interfaces.admin" not in out


# --------------------------------------------------------------------------- the other resolvers


def test_a_callable_that_cannot_be_imported(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, identity="{from: callable, path: nowhere_to_be_found.auth:current_admin}")
    code, out = doctor(capsys, path)
    assert code == 1
    assert (
        "  [NO] interfaces.admin.identity.path: cannot import 'nowhere_to_be_found.auth:current_admin': "
        "ModuleNotFoundError" in out
    )
    result = cli("check-config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[1].startswith(
        "  - interfaces.admin.identity.path: cannot import 'nowhere_to_be_found.auth:current_admin'"
    )


def test_check_config_imports_on_event(cli: Cli, tmp_path: Path) -> None:
    result = cli("check-config", str(config(tmp_path, top="on_event: tfa_middleware.cli:no_such_hook")))
    assert result.returncode == 1
    assert "  - on_event: cannot import 'tfa_middleware.cli:no_such_hook': AttributeError" in result.stderr
    assert cli("check-config", str(config(tmp_path, top="on_event: tfa_middleware.cli:main"))).returncode == 0


SHOP_AUTH = """
from tfa_middleware import Identity

def sync_admin(scope):
    token = dict(scope["headers"]).get(b"x-shop-token")
    return Identity("dora", session_id="s1") if token == b"dora-token" else None

async def async_admin(scope):
    return sync_admin(scope)

def broken_admin(scope):
    raise RuntimeError("the shop's user table is gone")
"""


@pytest.mark.parametrize(
    ("function", "kind"), [("sync_admin", "sync: run in a worker thread"), ("async_admin", "async")]
)
def test_a_callable_is_called_with_the_request(
    cli: Cli,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    kind: str,
) -> None:
    (tmp_path / "doctor_shop_auth.py").write_text(SHOP_AUTH, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "doctor_shop_auth", raising=False)
    path = config(tmp_path, identity=f"{{from: callable, path: 'doctor_shop_auth:{function}'}}")
    code, out = doctor(capsys, path, "--header", "X-Shop-Token: dora-token")
    assert code == 0
    assert f"  [ok] imported doctor_shop_auth:{function} ({kind}" in out
    assert "  [ok] the callable returned user 'dora'" in out
    assert "dora-token" not in out
    code, out = doctor(capsys, path, "--header", "X-Shop-Token: someone-else")
    assert code == 1
    assert "  [NO] the callable returned nobody" in out
    assert cli("check-config", str(path)).returncode == 0


def test_a_callable_that_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "doctor_shop_auth.py").write_text(SHOP_AUTH, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "doctor_shop_auth", raising=False)
    code, out = doctor(
        capsys, config(tmp_path, identity="{from: callable, path: 'doctor_shop_auth:broken_admin'}")
    )
    assert code == 1
    assert "  [NO] raised RuntimeError: the shop's user table is gone" in out


HEADER = "{from: header, header: X-Remote-User}"


def test_a_header_from_a_trusted_peer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, identity=HEADER, top="trusted_proxies: [10.0.0.0/8]")
    code, out = doctor(capsys, path, "--header", "X-Remote-User: carol", "--peer", "10.1.2.3")
    assert code == 0
    assert "  [ok] the peer 10.1.2.3 (--peer) is in trusted_proxies: it may set X-Remote-User" in out
    assert "  [ok] the x-remote-user header names user 'carol'" in out
    code, out = doctor(capsys, path, "--header", "X-Remote-User: carol")  # from 127.0.0.1: not trusted
    assert code == 1
    assert (
        "  the peer 127.0.0.1 (--peer) is not in trusted_proxies: X-Remote-User from it fails closed" in out
    )
    assert (
        "  [NO] the identity header x-remote-user came from 127.0.0.1, which is not in trusted_proxies" in out
    )


@pytest.mark.parametrize(
    ("identity", "scope_key"),
    [("{from: session, key: admin_id}", "session"), ("{from: scope_user, require: [is_staff]}", "user")],
)
def test_session_and_scope_user_cannot_be_seen_from_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], identity: str, scope_key: str
) -> None:
    header, _ = cookie_header({"admin_id": "alice"})
    code, out = doctor(capsys, config(tmp_path, identity=identity), "--cookie", header)
    assert code == 0  # nothing found wrong; nothing could be checked either, and it says so
    assert f'doctor runs outside the shop and cannot see scope["{scope_key}"]' in out
    assert f'the request has no scope["{scope_key}"]: TwoFactorMiddleware must sit inside the shop' in out


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        pytest.param(
            {"iface": f"{SAFE}\n    unidentified: warn"},
            "interfaces.admin.unidentified: warn gives up",
            id="warn",
        ),
        pytest.param(
            {"identity": COOKIE_IDENTITY.replace("}", ", max_age_seconds: 3600}")},
            "interfaces.admin.identity.max_age_seconds is set: an age stricter than the shop's",
            id="max-age",
        ),
        pytest.param(
            {"iface": "logout_url: /admin/logout"},
            "interfaces.admin.exempt is empty: if the shop's login page is under /admin, exempt it",
            id="exempt",
        ),
        pytest.param(
            {"iface": "exempt: [/admin/login]"}, "interfaces.admin.logout_url is not set", id="logout"
        ),
        pytest.param(
            {"iface": f"{SAFE}\n    on_missing_phone: skip"},
            "interfaces.admin.on_missing_phone: skip lets users without a phone in",
            id="skip",
        ),
        pytest.param(
            {"provider": "provider: {production_mode: false}"},
            "provider.production_mode: false: no text message is sent; codes only go to the outbox",
            id="sandbox",
        ),
        pytest.param(
            {"identity": HEADER, "top": "trusted_proxies: [127.0.0.1, 10.0.0.0/8]"},
            "trusted_proxies trusts this machine to set interfaces.admin.identity's header",
            id="loopback-proxy",
        ),
        pytest.param(
            {"identity": HEADER, "top": "trusted_proxies: ['::1']"},
            "trusted_proxies trusts this machine to set interfaces.admin.identity's header",
            id="loopback-proxy-v6",
        ),
    ],
)
def test_settings_that_look_wrong_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], warning: str
) -> None:
    code, out = doctor(capsys, config(tmp_path, **change))
    assert code == 0  # a warning is advice: the shop may mean it
    _, _, warnings = out.partition("\nWarnings:\n")
    listed = [line for line in warnings.splitlines() if line.startswith("  - ")]
    assert len(listed) == 1, listed
    assert listed[0].startswith(f"  - {warning}"), listed
    if "loopback" in warning or "trusted_proxies" in warning:
        assert "--forwarded-allow-ips" in listed[0]
        assert "--no-proxy-headers" in listed[0]


def test_safe_settings_get_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, config(tmp_path, identity=HEADER, top="trusted_proxies: [10.0.0.0/8]"))
    assert code == 0
    assert "Warnings:" not in out


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "args",
    [
        ["--header", "no colon"],
        ["--path", "admin"],
        ["--path", "/admin/%" + "25" * 10 + "2e"],
        ["--peer", "here"],
        [],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    argv = ["doctor", *args] if not args else ["doctor", "--config", str(config(tmp_path)), *args]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_path_no_interface_protects_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, config(tmp_path), "--path", "/shop/cart")
    assert code == 2
    assert out == "No interface protects /shop/cart: the middleware passes it to the shop untouched.\n"


def test_an_exempt_path_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, config(tmp_path), "--path", "/admin/login")
    assert code == 0
    assert "  /admin/login is exempt: the shop answers it without a second factor" in out


def test_a_bad_config_is_listed_like_check_config(cli: Cli, tmp_path: Path) -> None:
    path = config(tmp_path, iface="path_prefix: /admin")  # path_prefix twice
    (tmp_path / "tfa.yaml").write_text(path.read_text().replace(TFA_KEY, "short"), encoding="utf-8")
    result = cli("doctor", "--config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"invalid configuration in {path}:")
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- issue 17's policy

POLICY = (
    SAFE
    + "\n    step_up: [{path: /admin/settings/, max_age_seconds: 300}, {path: /admin/pay, methods: [post],"
    " max_age_seconds: 0}, {path: /admin/feed, max_age_seconds: 0}]"
    + "\n    mode: report\n    enroll_grace: {until: 2020-01-31}"
)


def test_doctor_says_what_the_policy_asks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, iface=POLICY)
    create_tables(path)
    header, _ = cookie_header({"admin_id": "bob"})
    code, out = doctor(capsys, path, "--cookie", header, "--path", "/admin/Settings/tax")
    assert code == 0
    lines = out.splitlines()
    assert "  /admin/Settings/tax is held by step_up: every method: a code at most 300 s old" in lines
    assert (
        "  => user bob of admin has no second factor yet: would be asked to enroll (enroll_grace lets them "
        "skip it for now); but interfaces.admin.mode is report: nobody is stopped, it is recorded"
    ) in lines
    assert "  - interfaces.admin.mode: report stops nobody" in out
    assert (
        "  - interfaces.admin.enroll_grace.until is past: the grace is over, enrollment is required" in lines
    )
    assert (
        "  - interfaces.admin.step_up[2]: max_age_seconds 0 on GET asks for a code at every page view" in out
    )
    assert "step_up[1]" not in out  # POST only: no page view is asked twice
    code, out = doctor(capsys, path, "--cookie", header, "--path", "/admin/pay")
    assert "  /admin/pay is held by step_up: POST a code typed for this request" in out.splitlines()


def test_doctor_names_an_exemption(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    seed_phone(path, "alice")

    async def exempt() -> None:
        async with TwoFactor.from_settings(load_settings(path)) as tfa:
            await tfa.rollout.exempt("admin", "alice", time.time() + 3600, "phone in the sea")

    asyncio.run(exempt())
    header, _ = cookie_header({"admin_id": "alice"})
    code, out = doctor(capsys, path, "--cookie", header)
    assert code == 0
    assert "  => user alice of admin is exempt until " in out
    assert "(phone in the sea): gets in without a code" in out
