"""The benchmarks still run: ``python -m benchmarks --quick`` does every part on tiny sizes.

A smoke run only, so that ``make bench`` cannot rot unnoticed. Nothing here asserts a timing: on a
shared machine a test's figures say nothing. PostgreSQL rows are expected when the suite has a
server (TFA_TEST_POSTGRES_URL), as in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

ROWS = [
    "1. In-process cost per request",
    "bare Starlette app, protected path",
    "Starlette SessionMiddleware with a cookie (peer)",
    "tfa: unprotected path",
    "tfa: valid proof, session cookie resolver (demo)",
    "tfa: valid proof, plain callable resolver",
    "1b. Reference costs of the signing steps alone",
    "1w. WSGI: in-process cost per request",
    "tfa WSGI: valid proof, plain callable resolver",
    "WSGI unprotected path",
    "2. Database queries on the hot path",
    "2b. A remembered browser",
    "tfa: a remembered browser's proof, demo resolver",
    "3. End to end under uvicorn",
    "smallest shop",
    "4. Challenge path at 5 concurrent clients",
    "SQLite (file, WAL)",
    "5. Scale: service calls with 100 and 1,000 enrollments",
    "5b. Query plans",
    "6. The JWT resolver in a request",
    "6b. The JWT resolver alone",
    "SEARCH tfa_enrollment USING INDEX",
    "10. The manage page's traffic queries with 10,000 audit events",
    "SEARCH tfa_event USING COVERING INDEX ix_tfa_event_kind_at",
    "6. flask_session: cost per request",
    "tfa flask_session resolver, warm cache",
    "Flask: open_session on a new request",
    "6. Django: the layer and the peer per request",
    "Django + django-otp OTPMiddleware (peer)",
    "Targets",
    "database queries on the hot path",
    "django_session, warm cache: the whole layer",
]


def test_quick_benchmark_runs_every_part_and_prints_every_table() -> None:
    before = RESULTS.stat().st_mtime_ns if RESULTS.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    missing = [row for row in ROWS if row not in done.stdout]
    assert not missing, f"missing from the output: {missing}\n{done.stdout}"
    lines = done.stdout.splitlines()
    hot_path_queries = lines[lines.index(next(line for line in lines if line.startswith("2. "))) + 3]
    assert hot_path_queries.split()[-1] == "0", hot_path_queries
    database_rows = [line for line in lines if line.startswith(("SQLite ", "PostgreSQL "))]
    assert len(database_rows) >= 3, done.stdout  # challenge: one per database; scale: two
    failed = [line for line in database_rows if line.split()[-1] != "0"]
    assert not failed, f"requests failed (the last column):\n{failed}"
    if os.environ.get("TFA_TEST_POSTGRES_URL"):
        assert sum(line.startswith("PostgreSQL ") for line in database_rows) == 3, done.stdout
    # --quick writes nothing: RESULTS.md holds the last full run only.
    assert (RESULTS.stat().st_mtime_ns if RESULTS.exists() else None) == before
