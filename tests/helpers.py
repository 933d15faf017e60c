"""Helpers for the command-line tests: a settings file, and ``tfa-middleware`` run in this process
(``main(argv)``, fast) or as a real process (for the few smoke tests that need one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tfa_middleware.cli import main

ROOT = Path(__file__).resolve().parent.parent
TFA_KEY = "cli-signing-key-0123456789-abcdefghijklmnopq"
SHOP_SECRET = "cli-shop-secret-0123456789-zyxwvutsrqponm"
# What config_file's ${...} references need; a test overrides one to see the error it makes.
CLI_ENV = {"TFA_KEY": TFA_KEY, "SHOP_SECRET": SHOP_SECRET}


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


class Cli:
    """``tfa-middleware ARGS`` in this process, its output captured (the ``cli`` fixture).

    ``main`` calls ``asyncio.run``: call this from sync tests, or through ``asyncio.to_thread``
    from async ones, never straight from inside a running event loop.
    """

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        self._capsys.readouterr()  # what the test printed before is not the command's output
        with self._monkeypatch.context() as patch:
            for name, value in {**CLI_ENV, **(env or {})}.items():
                patch.setenv(name, value)
            # check-config and doctor put the working directory on sys.path, as uvicorn does for the
            # shop's callables: a copy keeps that from leaking into the tests that run after.
            patch.setattr(sys, "path", list(sys.path))
            patch.chdir(ROOT)
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors, as the real process would exit
                code = exc.code if isinstance(exc.code, int) else 1
        out, err = self._capsys.readouterr()
        return CliResult(code, out, err)


def run_process(
    *args: str, command: tuple[str, ...] = (sys.executable, "-m", "tfa_middleware.cli")
) -> CliResult:
    """``tfa-middleware ARGS`` as a real process: what only a process shows (the entry point, the
    output at interpreter exit)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", **CLI_ENV}
    done = subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def config_file(tmp_path: Path, database: Path | None = None) -> Path:
    database = database or tmp_path / "tfa.sqlite3"
    path = tmp_path / "tfa.yaml"
    path.write_text(
        f"""
secret_keys: ["${{TFA_KEY}}"]
database_url: "sqlite+aiosqlite:///{database}"
interfaces:
  admin:
    path_prefix: /admin
    exempt: [/admin/login]
    identity:
      from: starlette_session_cookie
      secret_key: "${{SHOP_SECRET}}"
      key: admin_id
""",
        encoding="utf-8",
    )
    return path
