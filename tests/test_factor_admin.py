"""An administrator and a user's factors (issue 15): the command line and the management page
list a user's factors and remembered browsers, remove one, issue recovery codes; every change is
an audit event naming who made it, and goes to on_event."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factors import app_code, recovery_codes_on
from tests.harness import ADMIN_PHONE, Harness, config
from tests.helpers import CLI_ENV, Cli, config_file
from tfa_middleware import TwoFactor, load_settings
from tfa_middleware.service import AuditEvent, RequestInfo, VerifyStatus
from tfa_middleware.store import events as event_rows

MANAGE = "/admin/_2fa/manage"


def _config(tmp_path: Path) -> Path:
    path = config_file(tmp_path)
    path.write_text(path.read_text() + "    remember_days: 30\n")
    return path


async def _with_factors(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    """alice with a phone, an app, recovery codes and a remembered browser; the app's secret and
    the codes."""
    for name, value in CLI_ENV.items():
        monkeypatch.setenv(name, value)
    async with TwoFactor.from_settings(load_settings(path)) as tfa:
        status = await tfa.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
        app = await tfa.factors.begin_app("admin", "alice")
        assert (
            await tfa.factors.confirm_app("admin", "alice", app_code(app.secret, tfa.clock()))
        ).status is (VerifyStatus.APPROVED)
        await tfa.factors.rename("admin", "alice", app.factor_id, "work phone")
        codes = await tfa.factors.issue_recovery_codes("admin", "alice")
        request = RequestInfo(ip="203.0.113.9", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0")
        await tfa.factors.remember_browser("admin", "alice", status.generation, request=request)
    return app.secret, codes


def _lines(cli: Cli, path: Path, *args: str) -> list[dict[str, Any]]:
    result = cli("users", args[0], "--config", str(path), "--json", *args[1:])
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_command_line_lists_removes_and_issues(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path)
    secret, codes = asyncio.run(_with_factors(path, monkeypatch))
    listed = _lines(cli, path, "factors", "admin", "alice")
    assert [(r["kind"], r.get("label")) for r in listed] == [
        ("sms", None),
        ("totp", "work phone"),
        ("recovery", None),
        ("browser", "Firefox on Linux"),
    ]
    assert listed[0]["phone"] == "+1 ••• ••• 0123"
    assert listed[2]["unused"] == 10
    assert listed[3]["network"] == "203.0.113.0/24"
    text = cli("users", "factors", "--config", str(path), "admin", "alice").stdout
    for secret_text in (secret, *codes, "2015550123"):
        assert secret_text not in text
    assert "work phone" in text

    issued = cli("users", "recovery-codes", "--config", str(path), "admin", "alice")
    new_codes = re.findall(r"^[A-Z2-7]{4}(?:-[A-Z2-7]{4}){3}$", issued.stdout, flags=re.MULTILINE)
    assert len(new_codes) == 10
    assert not set(new_codes) & set(codes)

    app_id = str(listed[1]["id"])
    assert _lines(cli, path, "remove-factor", "admin", "alice", app_id) == [
        {"removed": int(app_id), "kind": "totp"}
    ]
    again = cli("users", "remove-factor", "--config", str(path), "admin", "alice", app_id)
    assert again.returncode == 1
    assert "has no factor" in again.stderr
    assert _lines(cli, path, "forget-browser", "admin", "alice", "--all") == [{"forgotten": 1}]
    nothing = cli("users", "forget-browser", "--config", str(path), "admin", "alice", "--all")
    assert nothing.returncode == 1
    assert [r["kind"] for r in _lines(cli, path, "factors", "admin", "alice")] == ["sms", "recovery"]

    audit = cli("audit", "--config", str(path), "--user", "alice", "--json")
    events = [json.loads(line) for line in audit.stdout.splitlines()]
    by_cli = [(e["event"], str(e["by"])[:4]) for e in events if "by" in e]
    assert by_cli == [
        ("recovery_codes_issued", "cli:"),
        ("factor_removed", "cli:"),
        ("browser_forgotten", "cli:"),
    ]
    for secret_text in (secret, *codes, *new_codes):
        assert secret_text not in audit.stdout


@pytest.fixture
async def managed(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path
) -> tuple[Harness, list[AuditEvent]]:
    heard: list[AuditEvent] = []
    interfaces = config(tmp_path)["interfaces"]
    interfaces["admin"]["manage"] = {"allow_user_ids": ["alice"]}
    interfaces["admin"]["remember_days"] = 30
    h = await make_harness(interfaces=interfaces, on_event=heard.append)
    await h.service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
    status = await h.service.set_phone("admin", "bob", "1", "2015550124", confirmed=True)
    app = await h.service.factors.begin_app("admin", "bob")
    await h.service.factors.confirm_app("admin", "bob", app_code(app.secret, h.clock.now))
    await h.service.factors.remember_browser("admin", "bob", status.generation)
    return h, heard


async def _post(h: Harness, url: str, **data: str) -> Any:
    headers = h.as_user("alice")
    token = await h.csrf(headers, MANAGE)
    return await h.client.post(url, data={"csrf_token": token, **data}, headers=headers)


async def test_the_management_page_lists_removes_and_issues(
    managed: tuple[Harness, list[AuditEvent]],
) -> None:
    h, heard = managed
    await h.pass_challenge("alice")
    listing = await h.client.get(MANAGE, headers=h.as_user("alice"))
    assert "Factors and browsers of bob" in listing.text
    url = f"{MANAGE}?interface=admin&user=bob"
    page = await h.client.get(url, headers=h.as_user("alice"))
    assert page.status_code == 200
    assert "Authenticator app" in page.text
    assert "A browser" in page.text
    factor_ids = re.findall(r'name="factor_id" value="(\d+)"', page.text)
    browser_id = re.search(r'name="browser_id" value="(\d+)"', page.text)
    assert browser_id
    bob = {"interface": "admin", "user_id": "bob"}
    issued = await _post(h, url, action="recovery_codes", **bob)
    codes = recovery_codes_on(issued.text)
    assert len(codes) == 10
    assert "New recovery codes for <strong>bob (admin)</strong>" in issued.text
    assert (
        await h.service.verify_code("admin", "bob", codes[0], factor="recovery")
    ).status is VerifyStatus.APPROVED
    forgot = await _post(h, url, action="forget_browser", browser_id=browser_id.group(1), **bob)
    assert "bob&#39;s browser is forgotten." in forgot.text
    removed = await _post(h, url, action="remove_factor", factor_id=factor_ids[-1], **bob)
    assert "Removed from bob." in removed.text
    assert [f.kind for f in await h.service.factors.of_user("admin", "bob") if f.kind != "recovery"] == [
        "sms"
    ]
    kinds = [
        (e.kind, (e.detail or {}).get("by")) for e in await event_rows.latest(h.service.store, "admin", "bob")
    ]
    for kind in ("recovery_codes_issued", "browser_forgotten", "factor_removed"):
        assert (kind, "admin/alice") in kinds
        assert kind in [e.kind for e in heard]


async def test_managers_act_only_on_their_interfaces(managed: tuple[Harness, list[AuditEvent]]) -> None:
    h, _ = managed
    await h.pass_challenge("alice")
    other = await h.client.get(f"{MANAGE}?interface=customer&user=bob", headers=h.as_user("alice"))
    assert other.status_code == 403
    refused = await _post(h, MANAGE, action="recovery_codes", interface="customer", user_id="bob")
    assert refused.status_code == 403
    assert "Recovery codes" not in refused.text
