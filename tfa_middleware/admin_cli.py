"""``tfa-middleware users …`` and ``tfa-middleware audit``: the administrator's account tools.

    tfa-middleware users list   --config FILE [--interface I] [--search PREFIX] [--json]
    tfa-middleware users show   --config FILE INTERFACE USER_ID [--json]
    tfa-middleware users set-phone --config FILE INTERFACE USER_ID COUNTRY_CODE NUMBER [--unconfirmed]
    tfa-middleware users require-enrollment|reset|delete|unlock --config FILE INTERFACE USER_ID
    tfa-middleware audit --config FILE [--interface I] [--user ID] [--since 24h|7d|2026-11-01] [--json]
    tfa-middleware db upgrade|current|check --config FILE
    tfa-middleware db purge --config FILE --older-than 90d

Every change is an audit event naming the operating-system user who made it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from . import schema
from .errors import InvalidInput, StoreUnavailable
from .service import EnrollmentStatus, RequestInfo, TwoFactor
from .settings import load_settings

USER_ACTIONS = ("require-enrollment", "reset", "delete", "unlock")


def register(commands: Any) -> None:
    users = commands.add_parser("users", help="show and change users' second factors")
    actions = users.add_subparsers(dest="users_command", required=True)

    listing = actions.add_parser("list", help="enrolled users, most recently changed first")
    _common(listing)
    listing.add_argument("--interface", help="only this interface")
    listing.add_argument("--search", default="", help="user ids starting with this")
    listing.add_argument("--limit", type=int, default=100)

    show = actions.add_parser("show", help="one user's second factor")
    _common(show, user=True)

    set_phone = actions.add_parser("set-phone", help="give a user a phone (active at once)")
    _common(set_phone, user=True)
    set_phone.add_argument("country_code", help="country calling code, e.g. 1 or +44")
    set_phone.add_argument("number", help="the national number")
    set_phone.add_argument(
        "--unconfirmed", action="store_true", help="the user confirms it with a code at the next sign-in"
    )
    for action in USER_ACTIONS:
        _common(actions.add_parser(action, help=_HELP[action]), user=True)

    db = commands.add_parser("db", help="the database schema and old rows")
    db_actions = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "bring the schema up to this release (run before starting a new release)"),
        ("current", "print the schema revision of the database and of this release"),
        ("check", "exit 1 when the database schema is behind this release"),
    ):
        db_actions.add_parser(name, help=text).add_argument(
            "--config", required=True, help="the settings file"
        )
    purge = db_actions.add_parser("purge", help="delete old audit events, outbox messages and spent codes")
    purge.add_argument("--config", required=True, help="the settings file")
    purge.add_argument("--older-than", required=True, help="an age such as 90d or 12h")

    audit = commands.add_parser("audit", help="the audit log: sends, verifies, locks, changes")
    audit.add_argument("--config", required=True, help="the settings file")
    audit.add_argument("--interface")
    audit.add_argument("--user", help="only this user id")
    audit.add_argument("--since", help="24h, 7d, 90m, or a date/time like 2026-11-01 or 2026-11-01T12:00")
    audit.add_argument("--limit", type=int, default=200)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")


_HELP = {
    "require-enrollment": "make the user set up their phone again at the next sign-in",
    "reset": "forget the user's phone and revoke every proof (they enroll again)",
    "delete": "remove the user's second factor entirely (the shop deleted the account)",
    "unlock": "lift a lock set by wrong codes",
}


def _common(parser: argparse.ArgumentParser, *, user: bool = False) -> None:
    parser.add_argument("--config", required=True, help="the settings file")
    parser.add_argument("--json", action="store_true", help="print JSON")
    if user:
        parser.add_argument("interface", help="the interface, e.g. admin")
        parser.add_argument("user_id", help="the shop's user id")


async def run(args: argparse.Namespace) -> int:
    tfa = TwoFactor.from_settings(load_settings(args.config))
    try:
        if args.command == "audit":
            return await _audit(tfa, args)
        if args.command == "db":
            return await _db(tfa, args)
        return await _users(tfa, args)
    except (InvalidInput, StoreUnavailable) as exc:
        print(f"tfa-middleware: {exc}", file=sys.stderr)
        return 1
    finally:
        await tfa.close()


async def _users(tfa: TwoFactor, args: argparse.Namespace) -> int:
    command = args.users_command
    if command == "list":
        rows = await tfa.users(args.interface, search=args.search, limit=max(1, args.limit))
        _print_users(rows, args.json)
        return 0
    who = RequestInfo(actor=f"cli:{getpass.getuser()}")
    interface, user_id = args.interface, args.user_id
    if command == "set-phone":
        status = await tfa.set_phone(
            interface, user_id, args.country_code, args.number, confirmed=not args.unconfirmed, request=who
        )
        _print_users([status], args.json)
        return 0
    current = await tfa.status(interface, user_id)  # validates the interface and the id
    if current.state == "none" and not current.generation:
        print(f"tfa-middleware: {interface} user {user_id!r} has no second factor here", file=sys.stderr)
        return 1
    if command == "require-enrollment":
        current = await tfa.require_enrollment(interface, user_id, request=who)
    elif command == "reset":
        current = await tfa.reset(interface, user_id, request=who)
    elif command == "delete":
        await tfa.delete(interface, user_id, request=who)
        print(json.dumps({"deleted": True}) if args.json else f"{interface} user {user_id} deleted")
        return 0
    elif command == "unlock":
        await tfa.unlock(interface, user_id, request=who)
        current = await tfa.status(interface, user_id)
    _print_users([current], args.json)
    return 0


def _print_users(rows: list[EnrollmentStatus], as_json: bool) -> None:
    for s in rows:
        record = {
            "interface": s.interface,
            "user_id": s.user_id,
            "state": s.state,
            "phone": s.masked_phone or None,
            "pending_phone": s.pending_masked_phone or None,
            "require_enrollment": s.require_enrollment,
            "last_verified_at": _iso(s.last_verified_at),
            "locked_until": _iso(s.locked_until),
        }
        if as_json:
            print(json.dumps(record, ensure_ascii=False))
        else:
            extra = [f"pending {s.pending_masked_phone}"] if s.pending_masked_phone else []
            extra += ["re-enrollment required"] if s.require_enrollment else []
            extra += [f"locked until {record['locked_until']}"] if s.locked_until else []
            print(
                f"{s.interface}/{s.user_id}  {s.state}  {s.masked_phone or '-'}  "
                f"last verified {record['last_verified_at'] or 'never'}"
                + (f"  ({', '.join(extra)})" if extra else "")
            )
    if not rows and not as_json:
        print("(no users)")


async def _audit(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if args.interface is not None:
        tfa.settings.interface(args.interface)
    since = parse_since(args.since, time.time()) if args.since else None
    events = await tfa.store.events(args.interface, args.user, limit=max(1, args.limit), since=since)
    for e in events:
        if args.json:
            print(
                json.dumps(
                    {
                        "at": _iso(e.at),
                        "interface": e.interface,
                        "user_id": e.user_id,
                        "event": e.kind,
                        "ip": e.ip,
                        "user_agent": e.user_agent,
                        **dict(e.detail or {}),
                    },
                    ensure_ascii=False,
                )
            )
        else:
            detail = " ".join(f"{k}={v}" for k, v in sorted((e.detail or {}).items()))
            print(f"{_iso(e.at)}  {e.interface}/{e.user_id}  {e.kind}  {e.ip or '-'}  {detail}".rstrip())
    if not events and not args.json:
        print("(no events)")
    return 0


async def _db(tfa: TwoFactor, args: argparse.Namespace) -> int:
    store, release = tfa.store, schema.head()
    if args.db_command == "upgrade":
        before, after = await store.upgrade_schema()
        print(
            f"database schema: {before or 'empty'} -> {after}" if before != after else f"already at {after}"
        )
        return 0
    found = await store.schema_revision()
    if args.db_command == "current":
        print(f"database: {found or 'empty (no tables yet)'}\nthis release: {release}")
        return 0
    if args.db_command == "check":
        if found == release:
            print(f"up to date ({release})")
            return 0
        print(
            f"the database schema is at {found or 'nothing'} but this release needs {release}: "
            f"run `tfa-middleware db upgrade --config {args.config}`",
            file=sys.stderr,
        )
        return 1
    if not re.fullmatch(r"\d+[mhd]", args.older_than.strip()):
        raise InvalidInput(f"--older-than {args.older_than!r}: use an age such as 90d, 12h or 30m")
    now = time.time()
    counts = await store.purge(parse_since(args.older_than, now), now)
    print(", ".join(f"{count} {name}" for name, count in counts.items()) + " deleted")
    return 0


def parse_since(text: str, now: float) -> float:
    """``90m``, ``24h``, ``7d`` before now, or an ISO date or date-time (UTC when no zone is given)."""
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if match:
        return now - int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--since {text!r}: use 90m, 24h, 7d or a date like 2026-11-01") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(at: float | None) -> str | None:
    if not at:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
