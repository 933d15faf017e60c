"""``make bench``: what the middleware costs, side by side with the bare app and its peers.

Runs, in order, and prints each table as it completes:

1. in-process cost per request, and 2. the database queries on the hot path (``hot_path.py``);
1w. the same for the WSGI middleware, against a bare WSGI app and Flask (``wsgi_hot_path.py``);
3. end to end under uvicorn with 1 and 2 workers (``end_to_end.py``, load from ``load.py``);
4. the challenge path through uvicorn, 50 clients, SQLite and PostgreSQL (``challenge.py``);
5. scale: 1,000 and 1,000,000 enrollments (``scale.py``);
6. the JWT resolver (``identity: {from: jwt}``) per request and per call (``jwt_resolver.py``);
7. ``from: flask_session``: the resolver against Flask's own session cost (``flask_session.py``);
8. Django: ``from: django_session`` per request, beside django-otp (``django_admin.py``);
10. the manage page's traffic queries with 1,000,000 audit events (``traffic.py``);
9. opt-in (``--only instructions``, valgrind, 10-20 minutes): instructions per request, the ratios
   of tables 1 and 1w counted rather than timed (``instructions.py``).

PostgreSQL is included when TFA_TEST_POSTGRES_URL is set (each run uses a schema of its own and
drops it). A full run of every part writes benchmarks/RESULTS.md with the machine's details;
``--quick`` runs every part on tiny sizes in a few seconds and writes nothing (the smoke test runs
it); ``--only`` runs some parts and writes only with ``--results``.

    python -m benchmarks [--quick] [--only hot,wsgi,e2e,challenge,scale,jwt,flask,django,traffic,
                                                instructions]
                         [--requests N] [--results PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sqlite3
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from . import challenge, django_admin, end_to_end, hot_path, jwt_resolver, scale, traffic, wsgi_hot_path
from .common import ROOT, Report, postgres_url, postgres_version, verdict

PARTS = ("hot", "wsgi", "e2e", "challenge", "scale", "traffic", "jwt", "flask", "django")
OPT_IN = ("instructions",)  # never part of a full run: valgrind, and a quarter of an hour
DEFAULT_RESULTS = Path(__file__).with_name("RESULTS.md")
PACKAGES = (
    "tfa-middleware",
    "starlette",
    "itsdangerous",
    "SQLAlchemy",
    "aiosqlite",
    "asyncpg",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "httpx",
    "PyJWT",
    "cryptography",
    "Flask",
    "Werkzeug",
    "Django",
    "django-otp",
    "gunicorn",
)


async def run(parts: list[str], quick: bool, requests: int, report: Report) -> None:
    if "hot" in parts:
        await hot_path.run(report, requests=requests, rounds=2 if quick else 6)
    if "wsgi" in parts:
        # Synchronous, as a WSGI server calls it; its own loop thread does the pages and look-ups.
        wsgi_hot_path.run(report, requests=requests, rounds=2 if quick else 6)
    if "e2e" in parts:
        await end_to_end.run(report, quick=quick)
    if "challenge" in parts:
        await challenge.run(report, quick=quick)
    if "scale" in parts:
        await scale.run(report, quick=quick)
    if "traffic" in parts:
        await traffic.run(report, quick=quick)
    if "jwt" in parts:
        await jwt_resolver.run(report, requests=requests, rounds=2 if quick else 6)
    if "flask" in parts:
        from . import flask_session  # Flask is the [flask] extra's: imported only for its part

        flask_session.run(report, number=200 if quick else 20_000)
    if "django" in parts:  # last: Django stays configured in this process once set up
        await django_admin.run(report, requests=max(60, requests // 5), rounds=2 if quick else 6)
    if "instructions" in parts:
        from . import instructions

        await asyncio.to_thread(instructions.run, report)
    url = postgres_url()
    if url and ("challenge" in parts or "scale" in parts or "traffic" in parts):
        report.facts["PostgreSQL server"] = await postgres_version(url)


def machine(report: Report) -> dict[str, str]:
    facts = {
        "date (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "memory": _memory(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite library": sqlite3.sqlite_version,
    }
    for name in PACKAGES:
        try:
            facts[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            facts[name] = "not installed"
    facts["commit"] = _commit()
    facts.update(report.facts)
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603, S607
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "tfa_middleware")
    return commit + (" (with uncommitted changes to tfa_middleware/)" if dirty else "")


def results_markdown(report: Report, facts: dict[str, str], seconds: float, command: str) -> str:
    out = [
        "# Benchmark results",
        "",
        f"Written by `{command}` in {seconds / 60:.1f} minutes. Run `make bench` again to replace this file;",
        "the method is described at the top of each module in `benchmarks/`.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in facts.items()],
        "",
        "## Targets",
        "",
        "| what | target | measured | verdict |",
        "| --- | --- | --- | --- |",
        *[f"| {t.what} | {t.goal} | {t.measured} | {verdict(t)} |" for t in report.targets],
        "",
        "## Figures",
        "",
    ]
    for table in report.tables:
        out += [table.markdown(), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every part on tiny sizes, in a few seconds")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts: {','.join(PARTS + OPT_IN)}"
    )
    parser.add_argument("--requests", type=int, default=None, help="in-process requests per case (30,000)")
    parser.add_argument("--results", type=Path, default=None, help="where to write the Markdown results")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS) - set(OPT_IN):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    requests = args.requests or (600 if args.quick else 30_000)
    # Only a full run of every part replaces RESULTS.md; any other run writes only where it is told.
    results = args.results or (DEFAULT_RESULTS if not args.quick and parts == list(PARTS) else None)

    report = Report()
    load_before = os.getloadavg()[0]
    if load_before > 0.5 and not args.quick:
        print(f"note: the machine is busy (load average {load_before:.2f}): expect noisy figures\n")
    started = time.monotonic()
    asyncio.run(run(parts, args.quick, requests, report))
    seconds = time.monotonic() - started
    # Other work on the machine shows here: a benchmark on a busy machine is a benchmark of the machine.
    report.facts["load average (1 min) before / after the run (after includes its own load)"] = (
        f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    )

    width = max((len(t.what) for t in report.targets), default=10)
    print("Targets")
    for t in report.targets:
        print(f"  {t.what:{width}}  {t.goal:42}  {t.measured:30}  {verdict(t)}")
    print(f"\nfinished in {seconds:.1f} s")
    if results is not None:
        command = "python -m benchmarks " + " ".join(sys.argv[1:])
        results.write_text(results_markdown(report, machine(report), seconds, command.strip()))
        print(f"results written to {results}")


if __name__ == "__main__":
    main()
