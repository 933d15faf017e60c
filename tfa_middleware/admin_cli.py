"""``tfa-middleware users …`` and ``tfa-middleware audit``: the administrator's account tools.

    tfa-middleware users list   --config FILE [--interface I] [--search PREFIX] [--json]
    tfa-middleware users show   --config FILE INTERFACE USER_ID [--json]
    tfa-middleware users set-phone --config FILE INTERFACE USER_ID COUNTRY_CODE NUMBER [--unconfirmed]
    tfa-middleware users require-enrollment|reset|delete|unlock --config FILE INTERFACE USER_ID
    tfa-middleware users factors|recovery-codes --config FILE INTERFACE USER_ID   (factors_cli.py)
    tfa-middleware users remove-factor|forget-browser --config FILE INTERFACE USER_ID ID
    tfa-middleware audit --config FILE [--interface I] [--user ID] [--since 24h|7d|2026-11-01] [--json]
    tfa-middleware db upgrade|current|check --config FILE
    tfa-middleware db purge --config FILE --older-than 90d

Every change is an audit event naming the operating-system user who made it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from . import schema
from .errors import InvalidInput, StoreUnavailable
from .service import EnrollmentStatus, RequestInfo, TwoFactor
from .settings import Settings, load_settings
from .store import Store, events, maintenance

Handler = Callable[[argparse.Namespace], int]
"""A subcommand, set with ``set_defaults(handler=...)``: the parsed arguments in, the exit status out."""
ServiceCommand = Callable[[TwoFactor, argparse.Namespace], Awaitable[int]]
StoreCommand = Callable[[Store, Settings, argparse.Namespace], Awaitable[int]]


def register(commands: Any) -> Any:
    """The ``users``, ``db`` and ``audit`` commands; the ``users`` subcommands' parsers, for
    factors_cli to add its own beside them."""
    users = commands.add_parser("users", help="show and change users' second factors")
    actions = users.add_subparsers(dest="users_command", required=True)

    listing = actions.add_parser("list", help="enrolled users, most recently changed first")
    common(listing)
    listing.add_argument("--interface", help="only this interface")
    listing.add_argument("--search", default="", help="user ids starting with this")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=with_service(_list))

    show = actions.add_parser("show", help="one user's second factor")
    common(show, user=True)
    show.set_defaults(handler=with_service(_show))

    set_phone = actions.add_parser("set-phone", help="give a user a phone (active at once)")
    common(set_phone, user=True)
    set_phone.add_argument("country_code", help="country calling code, e.g. 1 or +44")
    set_phone.add_argument("number", help="the national number")
    set_phone.add_argument(
        "--unconfirmed", action="store_true", help="the user confirms it with a code at the next sign-in"
    )
    set_phone.set_defaults(handler=with_service(_set_phone))
    for action, (act, text) in _USER_ACTIONS.items():
        parser = actions.add_parser(action, help=text)
        common(parser, user=True)
        parser.set_defaults(handler=with_service(act))

    # The schema commands need the database only: no provider, no HTTP client, and no import of the
    # shop's on_event, so an upgrade runs before the shop's code for this release is even installed.
    db = commands.add_parser("db", help="the database schema and old rows")
    db_actions = db.add_subparsers(dest="db_command", required=True)
    for name, command, text in (
        ("upgrade", _upgrade, "bring the schema up to this release (run before starting a new release)"),
        ("current", _current, "print the schema revision of the database and of this release"),
        ("check", _check, "exit 1 when the database schema is behind this release"),
    ):
        parser = db_actions.add_parser(name, help=text)
        parser.add_argument("--config", required=True, help="the settings file")
        parser.set_defaults(handler=_with_store(command))
    purge = db_actions.add_parser("purge", help="delete old audit events, outbox messages and spent codes")
    purge.add_argument("--config", required=True, help="the settings file")
    purge.add_argument("--older-than", required=True, help="an age such as 90d or 12h")
    purge.set_defaults(handler=_with_store(_purge))

    audit = commands.add_parser("audit", help="the audit log: sends, verifies, locks, changes")
    audit.add_argument("--config", required=True, help="the settings file")
    audit.add_argument("--interface")
    audit.add_argument("--user", help="only this user id")
    audit.add_argument("--since", help="24h, 7d, 90m, or a date/time like 2026-11-01 or 2026-11-01T12:00")
    audit.add_argument("--limit", type=int, default=200)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(handler=_with_store(_audit))
    return actions


def common(parser: argparse.ArgumentParser, *, user: bool = False) -> None:
    parser.add_argument("--config", required=True, help="the settings file")
    parser.add_argument("--json", action="store_true", help="print JSON")
    if user:
        parser.add_argument("interface", help="the interface, e.g. admin")
        parser.add_argument("user_id", help="the shop's user id")


def with_service(command: ServiceCommand) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        return asyncio.run(_on_service(command, args))

    return handler


def _with_store(command: StoreCommand) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        return asyncio.run(_on_store(command, args))

    return handler


async def _on_service(command: ServiceCommand, args: argparse.Namespace) -> int:
    tfa = TwoFactor.from_settings(load_settings(args.config))
    try:
        return await command(tfa, args)
    except (InvalidInput, StoreUnavailable) as exc:
        print(f"tfa-middleware: {exc}", file=sys.stderr)
        return 1
    finally:
        await tfa.close()


async def _on_store(command: StoreCommand, args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    store = Store.from_settings(settings)
    try:
        return await command(store, settings, args)
    except (InvalidInput, StoreUnavailable) as exc:
        print(f"tfa-middleware: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()


# ---------------------------------------------------------------------------- users


async def _list(tfa: TwoFactor, args: argparse.Namespace) -> int:
    rows = await tfa.users(args.interface, search=args.search, limit=max(1, args.limit))
    _print_users(rows, args.json)
    return 0


async def _set_phone(tfa: TwoFactor, args: argparse.Namespace) -> int:
    status = await tfa.set_phone(
        args.interface,
        args.user_id,
        args.country_code,
        args.number,
        confirmed=not args.unconfirmed,
        request=who(),
    )
    _print_users([status], args.json)
    return 0


async def existing(tfa: TwoFactor, args: argparse.Namespace) -> EnrollmentStatus | None:
    """The user's status (validating the interface and the id); None, said on stderr, if they have
    no second factor here: the actions below would only record events about nobody."""
    current = await tfa.status(args.interface, args.user_id)
    if current.state == "none" and not current.generation:
        print(
            f"tfa-middleware: {args.interface} user {args.user_id!r} has no second factor here",
            file=sys.stderr,
        )
        return None
    return current


async def _show(tfa: TwoFactor, args: argparse.Namespace) -> int:
    current = await existing(tfa, args)
    if current is None:
        return 1
    _print_users([current], args.json)
    return 0


async def _require_enrollment(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    _print_users([await tfa.require_enrollment(args.interface, args.user_id, request=who())], args.json)
    return 0


async def _reset(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    _print_users([await tfa.reset(args.interface, args.user_id, request=who())], args.json)
    return 0


async def _delete(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    await tfa.delete(args.interface, args.user_id, request=who())
    print(json.dumps({"deleted": True}) if args.json else f"{args.interface} user {args.user_id} deleted")
    return 0


async def _unlock(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    await tfa.unlock(args.interface, args.user_id, request=who())
    _print_users([await tfa.status(args.interface, args.user_id)], args.json)
    return 0


_USER_ACTIONS: dict[str, tuple[ServiceCommand, str]] = {
    "require-enrollment": (
        _require_enrollment,
        "make the user set up their phone again at the next sign-in",
    ),
    "reset": (_reset, "forget the user's phone and revoke every proof (they enroll again)"),
    "delete": (_delete, "remove the user's second factor entirely (the shop deleted the account)"),
    "unlock": (_unlock, "lift a lock set by wrong codes"),
}


def who() -> RequestInfo:
    return RequestInfo(actor=f"cli:{getpass.getuser()}")


def _print_users(rows: list[EnrollmentStatus], as_json: bool) -> None:
    for s in rows:
        record = {
            "interface": s.interface,
            "user_id": s.user_id,
            "state": s.state,
            "phone": s.masked_phone or None,
            "pending_phone": s.pending_masked_phone or None,
            "require_enrollment": s.require_enrollment,
            "last_verified_at": iso(s.last_verified_at),
            "locked_until": iso(s.locked_until),
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


async def _audit(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    if args.interface is not None:
        settings.interface(args.interface)  # raises UnknownInterface
    since = parse_since(args.since, time.time()) if args.since else None
    found = await events.latest(store, args.interface, args.user, limit=max(1, args.limit), since=since)
    for e in found:
        if args.json:
            print(
                json.dumps(
                    {
                        "at": iso(e.at),
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
            print(f"{iso(e.at)}  {e.interface}/{e.user_id}  {e.kind}  {e.ip or '-'}  {detail}".rstrip())
    if not found and not args.json:
        print("(no events)")
    return 0


# ---------------------------------------------------------------------------- db


async def _upgrade(store: Store, _settings: Settings, _args: argparse.Namespace) -> int:
    before, after = await store.upgrade_schema()
    print(f"database schema: {before or 'empty'} -> {after}" if before != after else f"already at {after}")
    return 0


async def _current(store: Store, _settings: Settings, _args: argparse.Namespace) -> int:
    found = await store.schema_revision()
    print(f"database: {found or 'empty (no tables yet)'}\nthis release: {schema.head()}")
    return 0


async def _check(store: Store, _settings: Settings, args: argparse.Namespace) -> int:
    found, release = await store.schema_revision(), schema.head()
    if found == release:
        print(f"up to date ({release})")
        return 0
    print(
        f"the database schema is at {found or 'nothing'} but this release needs {release}: "
        f"run `tfa-middleware db upgrade --config {args.config}`",
        file=sys.stderr,
    )
    return 1


async def _purge(store: Store, _settings: Settings, args: argparse.Namespace) -> int:
    if not re.fullmatch(r"\d+[mhd]", args.older_than.strip()):
        raise InvalidInput(f"--older-than {args.older_than!r}: use an age such as 90d, 12h or 30m")
    now = time.time()
    counts = await maintenance.purge(store, parse_since(args.older_than, now), now)
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


def iso(at: float | None) -> str | None:
    if not at:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
