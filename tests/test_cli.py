"""The ``tfa-middleware`` command line: check-config and outbox, run in this process (``main``), and
one smoke test per entry point run as a real process."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import ADMIN_PHONE, FakeClock
from tests.helpers import SHOP_SECRET, TFA_KEY, Cli, config_file, run_process
from tfa_middleware import TwoFactor, load_settings

# --------------------------------------------------------------------------- check-config


def test_check_config_prints_the_masked_settings(cli: Cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    first, _, rest = result.stdout.partition("\n")
    assert first == f"# {path}: valid"
    described = yaml.safe_load(rest)
    assert described["secret_keys"] == ["**********"]
    assert described["interfaces"]["admin"]["pages_path"] == "/admin/_2fa"
    assert described["interfaces"]["admin"]["identity"]["secret_key"] == "**********"
    assert TFA_KEY not in result.stdout
    assert SHOP_SECRET not in result.stdout


def test_check_config_json(cli: Cli, tmp_path: Path) -> None:
    result = cli("check-config", "--json", str(config_file(tmp_path)))
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["interfaces"]["admin"]["proof_cookie"] == "tfa_admin"
    assert TFA_KEY not in result.stdout
    assert SHOP_SECRET not in result.stdout


def test_check_config_lists_every_problem_on_stderr(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"""
secret_keys: ["{TFA_KEY}"]
colour: blue
interfaces:
  admin:
    path_prefix: admin
    identity: {{from: session, key: admin_id}}
  customer:
    path_prefix: /account
    exempt: [/login]
    identity: {{from: session, key: customer_id}}
""",
        encoding="utf-8",
    )
    result = cli("check-config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"invalid configuration in {path}:"
    assert "  - interfaces.admin.path_prefix: must start with '/'" in lines
    assert "  - interfaces.customer.exempt[0]: '/login' is outside path_prefix '/account'" in lines
    assert any(line.startswith("  - colour: unknown key") for line in lines)
    assert len(lines) == 4
    assert TFA_KEY not in result.stderr


def test_check_config_reports_a_missing_environment_variable(cli: Cli, tmp_path: Path) -> None:
    result = cli("check-config", str(config_file(tmp_path)), env={"SHOP_SECRET": ""})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "  - interfaces.admin.identity.secret_key: environment variable SHOP_SECRET is not set"
        in result.stderr.splitlines()
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "  - cannot read the file: No such file or directory", id="missing"),
        pytest.param(
            "interfaces: [admin\n",
            "  - line 2, column 1: expected ',' or ']', but got '<stream end>'",
            id="yaml",
        ),
    ],
)
def test_check_config_unusable_file(cli: Cli, tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "tfa.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = cli("check-config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"invalid configuration in {path}:", expected]


# --------------------------------------------------------------------------- outbox


def test_outbox_on_an_empty_database_says_so(cli: Cli, tmp_path: Path) -> None:
    result = cli("outbox", "--config", str(config_file(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "(the outbox is empty: ask for a code on the challenge page first)\n"


async def _send_a_code(path: Path) -> None:
    settings = load_settings(path, environ={"TFA_KEY": TFA_KEY, "SHOP_SECRET": SHOP_SECRET})
    service = TwoFactor.from_settings(settings, clock=FakeClock())
    try:
        await service.set_phone("admin", "alice", *ADMIN_PHONE, confirmed=True)
        await service.send_code("admin", "alice")
    finally:
        await service.close()


def test_outbox_prints_a_sent_code_with_the_number_masked(cli: Cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    asyncio.run(_send_a_code(path))
    full_number = "".join(ADMIN_PHONE)

    as_json = cli("outbox", "--config", str(path), "--json")
    assert as_json.returncode == 0, as_json.stderr
    [line] = as_json.stdout.splitlines()
    message = json.loads(line)
    assert message["interface"] == "admin"
    assert message["user_id"] == "alice"
    assert message["channel"] == "sms"
    assert message["to"] == "+1 ••• ••• 0123"
    assert re.search(r"\b\d{6}\b", message["body"])
    assert full_number not in as_json.stdout
    assert ADMIN_PHONE[1] not in as_json.stdout

    as_text = cli("outbox", "--config", str(path))
    assert as_text.returncode == 0, as_text.stderr
    assert "admin/alice  sms to +1 ••• ••• 0123" in as_text.stdout
    assert message["body"] in as_text.stdout
    assert ADMIN_PHONE[1] not in as_text.stdout


def test_outbox_with_an_unusable_database_fails_cleanly(tmp_path: Path) -> None:
    # A real process (`python -m tfa_middleware.cli`, the smoke test of that entry point): only at
    # interpreter exit would an engine left open print its "Exception ignored" traceback.
    path = config_file(tmp_path, database=tmp_path / "no-such-dir" / "tfa.sqlite3")
    result = run_process("outbox", "--config", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("tfa-middleware: database ")


def test_the_console_script_runs(tmp_path: Path) -> None:
    # The `tfa-middleware` script that pip installed next to this interpreter ([project.scripts]).
    script = Path(sys.executable).with_name("tfa-middleware")
    assert script.exists(), "the package is not installed: make setup"
    path = config_file(tmp_path)
    result = run_process("check-config", str(path), command=(str(script),))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# {path}: valid\n")
    assert TFA_KEY not in result.stdout
    assert SHOP_SECRET not in result.stdout


def test_outbox_with_a_bad_config_lists_the_problems(cli: Cli, tmp_path: Path) -> None:
    result = cli("outbox", "--config", str(config_file(tmp_path)), env={"TFA_KEY": "short"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1].startswith("  - secret_keys: item 0: must be at least 32 characters")
