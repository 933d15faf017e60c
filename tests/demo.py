"""The demo shop (demo_app/) under a real uvicorn, for the HTTP walk-through (test_demo.py) and the
browser tests (test_browser.py): its URL, its database, its codes and its command line."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.codes import code_in
from tests.helpers import ROOT, Cli, CliResult
from tests.servers import uvicorn_server

DEMO_CONFIG = ROOT / "demo_app" / "config.yaml"


@dataclass
class Demo:
    """One running demo shop. Its database is a file of its own, so no test sees another's limits."""

    url: str
    database: Path
    config: Path
    runner: Cli

    def cli(self, *args: str) -> CliResult:
        """``tfa-middleware ARGS --config CONFIG`` on this demo's settings and database, in this
        process; a command that fails fails the test, with its error output."""
        result = self.runner(*args, "--config", str(self.config), env={"TFA_DEMO_DB": str(self.database)})
        assert result.returncode == 0, result.stderr
        return result

    def latest_code(self, user_id: str) -> str:
        """The code in the newest sandbox text to ``user_id``, read from the demo's database."""
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT body FROM tfa_outbox WHERE user_id = ? ORDER BY id DESC LIMIT 1", (user_id,)
            ).fetchone()
        assert row, f"no text message to user {user_id} in the outbox"
        return code_in(row[0])

    def age_the_sends(self, seconds: float) -> None:
        """Move every logged send back in time, as if the codes had been asked for earlier."""
        with closing(sqlite3.connect(self.database)) as db, db:
            db.execute("UPDATE tfa_send SET at = at - ?", (seconds,))


@contextmanager
def demo_server(
    folder: Path,
    runner: Cli,
    changes: Mapping[str, Any] | None = None,
    args: tuple[str, ...] = (),
    port: int | None = None,
) -> Iterator[Demo]:
    """The demo under uvicorn (``uvicorn ARGS``) with a fresh database in ``folder``: on
    demo_app/config.yaml itself, as the README runs it, or on a copy changed by ``changes`` (a
    top-level key set to None is removed)."""
    database = folder / "demo.sqlite3"
    env = {**os.environ, "TFA_DEMO_DB": str(database)}
    config = DEMO_CONFIG
    if changes is not None:
        settings = yaml.safe_load(DEMO_CONFIG.read_text())
        for key, value in changes.items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump(settings))
        env["TFA_DEMO_CONFIG"] = str(config)
    with uvicorn_server("demo_app.app:create_app", folder, env, args=args, port=port) as url:
        yield Demo(url, database, config, runner)
