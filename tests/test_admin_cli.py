"""``tfa-middleware users …`` and ``audit``, run in this process (``main``) against a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Cli, config_file
from tfa_middleware.admin_cli import parse_since
from tfa_middleware.errors import InvalidInput


def users(cli: Cli, config: Path, *args: str) -> list[dict[str, object]]:
    result = cli("users", *args[:1], "--config", str(config), "--json", *args[1:])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_an_admin_manages_a_user_from_the_command_line(cli: Cli, tmp_path: Path) -> None:
    config = config_file(tmp_path)
    assert users(cli, config, "list") == []
    [alice] = users(cli, config, "set-phone", "admin", "alice", "+1", "201 555 0123")
    assert (alice["state"], alice["phone"]) == ("active", "+1 ••• ••• 0123")
    [bob] = users(cli, config, "set-phone", "admin", "bob", "1", "2015550124", "--unconfirmed")
    assert (bob["state"], bob["pending_phone"]) == ("pending", "+1 ••• ••• 0124")
    assert {u["user_id"] for u in users(cli, config, "list")} == {"alice", "bob"}
    assert [u["user_id"] for u in users(cli, config, "list", "--search", "al")] == ["alice"]

    [required] = users(cli, config, "require-enrollment", "admin", "alice")
    assert required["require_enrollment"] is True
    [reset] = users(cli, config, "reset", "admin", "alice")
    assert (reset["state"], reset["phone"], reset["require_enrollment"]) == ("none", None, False)
    [shown] = users(cli, config, "show", "admin", "alice")
    assert shown["state"] == "none"
    [unlocked] = users(cli, config, "unlock", "admin", "bob")
    assert unlocked["locked_until"] is None
    assert users(cli, config, "delete", "admin", "bob") == [{"deleted": True}]
    assert [u["user_id"] for u in users(cli, config, "list")] == ["alice"]

    audit = cli("audit", "--config", str(config), "--user", "alice", "--json")
    assert audit.returncode == 0, audit.stderr
    events = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [e["event"] for e in events] == ["phone_set", "enrollment_required", "reset"]
    assert all(str(e["by"]).startswith("cli:") for e in events)
    assert "2015550123" not in audit.stdout
    text = cli("audit", "--config", str(config), "--since", "1h")
    assert "admin/bob  deleted" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "admin", "nobody"), "admin user 'nobody' has no second factor here"),
        (("reset", "nowhere", "alice"), "unknown interface 'nowhere' (configured: admin)"),
        (("set-phone", "admin", "alice", "1", "123"), "That phone number is too short."),
        (("set-phone", "admin", "alice", "999", "2015550123"), "+999 is not a country calling code we know."),
    ],
)
def test_bad_requests_get_a_clear_error_and_change_nothing(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    config = config_file(tmp_path)
    result = cli("users", args[0], "--config", str(config), *args[1:])
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert users(cli, config, "list") == []


def test_a_bad_since_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("audit", "--config", str(config_file(tmp_path)), "--since", "last tuesday")
    assert result.returncode == 1
    assert "--since 'last tuesday': use 90m, 24h, 7d or a date like 2026-11-01" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", 1_000_000 - 5400),
        ("24h", 1_000_000 - 86400),
        ("7d", 1_000_000 - 604800),
        ("1970-01-02", 86400),
        ("1970-01-02T01:00", 90000),
        ("1970-01-02T01:00+01:00", 86400),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, 1_000_000) == expected


def test_parse_since_refuses_nonsense() -> None:
    with pytest.raises(InvalidInput):
        parse_since("soon", 0)
