"""``tfa-middleware health``: exit 0 when the database, its schema and the provider are ready, 1
with the failing check named otherwise; ``--online`` asks the provider (a fake server here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.helpers import Cli
from tfa_middleware import schema
from tfa_middleware.testing import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_SERVICE_SID,
    FakeTwilioVerify,
    serve,
)


def write(tmp_path: Path, database: Path, provider: str = "") -> Path:
    path = tmp_path / "tfa.yaml"
    path.write_text(
        "\n".join(
            [
                'secret_keys: ["health-test-key-0123456789-abcdefghij"]',
                f'database_url: "sqlite+aiosqlite:///{database}"',
                *([f"provider:\n{provider}"] if provider else []),
                "interfaces:",
                "  admin:",
                "    path_prefix: /admin",
                "    identity: {from: session, key: admin_id}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def twilio(url: str, service_sid: str = FAKE_SERVICE_SID) -> str:
    return "\n".join(
        [
            "  name: twilio_verify",
            "  production_mode: true",
            f"  account_sid: {FAKE_ACCOUNT_SID}",
            f"  auth_token: {FAKE_AUTH_TOKEN}",
            f"  service_sid: {service_sid}",
            f"  api_url: {url}",
        ]
    )


def test_a_good_configuration_passes_every_check(cli: Cli, tmp_path: Path, migrated_sqlite: Path) -> None:
    database = tmp_path / "tfa.sqlite3"
    shutil.copyfile(migrated_sqlite, database)
    result = cli("health", "--config", str(write(tmp_path, database)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "ok    database reachable (sqlite)",
        f"ok    schema current ({schema.head()})",
        "ok    provider configured (sandbox: production_mode is false, nothing is sent)",
    ]


def test_a_schema_behind_the_release_fails(cli: Cli, tmp_path: Path, migrated_sqlite: Path) -> None:
    database = tmp_path / "tfa.sqlite3"
    shutil.copyfile(migrated_sqlite, database)
    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        schema.downgrade(conn, "0007")
    engine.dispose()
    result = cli("health", "--config", str(write(tmp_path, database)))
    assert result.returncode == 1
    assert f"FAIL  schema current (0007; this release needs {schema.head()}" in result.stdout
    # Nothing was migrated: health only reads.
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        assert schema.current(conn) == "0007"
    engine.dispose()


def test_an_unreachable_database_fails(cli: Cli, tmp_path: Path) -> None:
    result = cli("health", "--config", str(write(tmp_path, tmp_path / "missing" / "tfa.sqlite3")))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  database reachable (sqlite: database unreachable")
    assert lines[1] == "FAIL  schema current (the database is unreachable)"


@pytest.mark.parametrize(("service_sid", "code"), [(FAKE_SERVICE_SID, 0), ("VA" + "ab" * 16, 1)])
def test_online_asks_the_provider(
    cli: Cli, tmp_path: Path, migrated_sqlite: Path, service_sid: str, code: int
) -> None:
    database = tmp_path / "tfa.sqlite3"
    shutil.copyfile(migrated_sqlite, database)
    with serve(FakeTwilioVerify()) as url:
        config = write(tmp_path, database, twilio(url, service_sid))
        offline = cli("health", "--config", str(config))
        online = cli("health", "--config", str(config), "--online")
    assert offline.returncode == 0  # configured: nothing asked
    assert "ok    provider configured (twilio_verify, production mode)" in offline.stdout
    assert "provider answers" not in offline.stdout
    assert online.returncode == code, online.stdout + online.stderr
    last = online.stdout.splitlines()[-1]
    assert last.startswith("ok    provider answers" if code == 0 else "FAIL  provider answers")
    assert FAKE_AUTH_TOKEN not in online.stdout + online.stderr
