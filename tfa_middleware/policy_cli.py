"""Issue 17's commands: exemptions of one user, and report mode's list of who would be affected.

    tfa-middleware users exempt         USER_ID --interface I --until DATE --reason TEXT --config FILE
    tfa-middleware users end-exemption  USER_ID --interface I --config FILE
    tfa-middleware users exemptions     --interface I --config FILE
    tfa-middleware report               --interface I --config FILE [--days 7] [--all]

An exemption lasts at most MAX_EXEMPTION_DAYS (30) days and needs a reason; each one, and its end,
is an audit event naming the operating-system user. ``report`` lists the users that report mode
saw in the last ``--days`` UTC days, and every pending or locked user of the interface, each
with what would stop them: never enrolled, pending, locked (``--all``: those who would only be
asked for their code too).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .admin_cli import iso, who, with_service
from .outcomes import EnrollmentStatus
from .rollout import MAX_EXEMPTION_DAYS, parse_until
from .service import TwoFactor
from .store.policy import Exemption


def register(commands: Any, users: Any) -> None:
    """Add ``users exempt|end-exemption|exemptions`` and ``report``."""
    exempt = users.add_parser(
        "exempt", help=f"let a user in without a second factor for a while (≤ {MAX_EXEMPTION_DAYS} days)"
    )
    _common(exempt, user=True)
    exempt.add_argument(
        "--until", required=True, help="a date (through its end, UTC) or a time with its zone"
    )
    exempt.add_argument("--reason", required=True, help="who asked and why (kept in the audit log)")
    exempt.set_defaults(handler=with_service(_exempt))

    end = users.add_parser("end-exemption", help="end a user's exemption now (their exempt proof dies)")
    _common(end, user=True)
    end.set_defaults(handler=with_service(_end))

    listing = users.add_parser("exemptions", help="the exemptions in force")
    _common(listing)
    listing.set_defaults(handler=with_service(_list))

    report = commands.add_parser("report", help="report mode: who would be affected by enforcing")
    _common(report)
    report.add_argument("--days", type=int, default=7, help="the UTC days of report mode to read (default 7)")
    report.add_argument("--all", action="store_true", help="also those who would just be asked for a code")
    report.set_defaults(handler=with_service(_report))


def _common(parser: argparse.ArgumentParser, *, user: bool = False) -> None:
    parser.add_argument("--config", required=True, help="the settings file")
    parser.add_argument("--interface", required=True, help="the interface, e.g. admin")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    if user:
        parser.add_argument("user_id", help="the shop's user id")


def _record(item: Exemption) -> dict[str, Any]:
    return {
        "interface": item.interface,
        "user_id": item.user_id,
        "until": iso(item.until),
        "reason": item.reason,
        "by": item.created_by,
        "since": iso(item.created_at),
    }


def _print(records: list[dict[str, Any]], as_json: bool, line: str, empty: str) -> None:
    for record in records:
        print(json.dumps(record, ensure_ascii=False) if as_json else line.format(**record))
    if not records and not as_json:
        print(empty)


async def _exempt(tfa: TwoFactor, args: argparse.Namespace) -> int:
    tfa.settings.interface(args.interface)
    item = await tfa.rollout.exempt(
        args.interface, args.user_id, parse_until(args.until), args.reason, request=who()
    )
    _print([_record(item)], args.json, "{interface}/{user_id} exempt until {until}: {reason}", "")
    return 0


async def _end(tfa: TwoFactor, args: argparse.Namespace) -> int:
    tfa.settings.interface(args.interface)
    if not await tfa.rollout.end_exemption(args.interface, args.user_id, request=who()):
        print(
            f"tfa-middleware: {args.interface} user {args.user_id!r} has no exemption in force",
            file=sys.stderr,
        )
        return 1
    print(json.dumps({"ended": True}) if args.json else f"{args.interface}/{args.user_id}: exemption ended")
    return 0


async def _list(tfa: TwoFactor, args: argparse.Namespace) -> int:
    tfa.settings.interface(args.interface)
    records = [_record(item) for item in await tfa.rollout.exemptions(args.interface)]
    _print(records, args.json, "{user_id}  until {until}  by {by}: {reason}", "(no exemptions)")
    return 0


def affected(status: EnrollmentStatus, now: float) -> str:
    """What enforcing would do to the user: locked, pending, never enrolled, or challenged."""
    if status.locked_until > now:
        return "locked"
    if status.pending_masked_phone and not status.usable:
        return "pending"
    if status.needs_enrollment:
        return (
            "never enrolled"
            if not status.factors and not status.pending_masked_phone
            else "must enroll again"
        )
    return "challenged"


async def _report(tfa: TwoFactor, args: argparse.Namespace) -> int:
    iface = tfa.settings.interface(args.interface)
    now = tfa.clock()
    # The last day each was seen (rows come oldest first).
    reported = await tfa.rollout.reported(args.interface, max(1, args.days))
    seen: dict[str, str] = {user_id: day for user_id, day, _kind in reported}
    for status in await tfa.users(args.interface, limit=100_000):
        if status.pending_masked_phone or status.locked_until > now:
            seen.setdefault(status.user_id, "")
    records = []
    for user_id in sorted(seen):
        status = await tfa.status(args.interface, user_id)
        what = affected(status, now)
        if what == "challenged" and not args.all:
            continue
        records.append({"user_id": user_id, "affected": what, "last_seen": seen[user_id] or None})
    if not args.json and iface.mode != "report":
        print(f"(interfaces.{args.interface}.mode is {iface.mode}: nobody is recorded while it enforces)")
    _print(records, args.json, "{user_id}  {affected}  last seen {last_seen}", "(nobody would be affected)")
    return 0
