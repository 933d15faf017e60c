"""``tfa-middleware users factors|remove-factor|forget-browser|recovery-codes``: a user's factors
and remembered browsers from the command line.

    tfa-middleware users factors        --config FILE INTERFACE USER_ID [--json]
    tfa-middleware users remove-factor  --config FILE INTERFACE USER_ID FACTOR_ID
    tfa-middleware users forget-browser --config FILE INTERFACE USER_ID (BROWSER_ID | --all)
    tfa-middleware users recovery-codes --config FILE INTERFACE USER_ID

``recovery-codes`` prints a new set once (the old set stops working): hand it to the user by a
safe way. Every change is an audit event naming the operating-system user, and goes to on_event.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import phone as phones
from .admin_cli import common, existing, iso, who, with_service
from .service import Factor, RememberedBrowser, TwoFactor


def register(actions: Any) -> None:
    """Add the factor commands to the ``users`` subcommands (``admin_cli.register``'s answer)."""
    listing = actions.add_parser("factors", help="a user's factors and remembered browsers")
    common(listing, user=True)
    listing.set_defaults(handler=with_service(_factors))

    remove = actions.add_parser(
        "remove-factor", help="remove one factor (a passkey, an app, a phone, the recovery codes)"
    )
    common(remove, user=True)
    remove.add_argument("factor_id", type=int, help="the id `users factors` shows")
    remove.set_defaults(handler=with_service(_remove))

    forget = actions.add_parser("forget-browser", help="forget a remembered browser: it is asked for a code")
    common(forget, user=True)
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("browser_id", type=int, nargs="?", help="the id `users factors` shows")
    which.add_argument("--all", action="store_true", help="every remembered browser of the user")
    forget.set_defaults(handler=with_service(_forget))

    codes = actions.add_parser("recovery-codes", help="issue a new set of recovery codes (printed once)")
    common(codes, user=True)
    codes.set_defaults(handler=with_service(_recovery_codes))


def factor_record(factor: Factor) -> dict[str, Any]:
    """What may be shown of a factor: never a secret, a code's hash, or a whole phone number."""
    value = phones.mask(factor.value) if factor.kind == "sms" else None
    return {
        "id": factor.id,
        "kind": factor.kind,
        "label": factor.label or None,
        "phone": value,
        "confirmed": factor.confirmed,
        "created_at": iso(factor.created_at),
        "last_used_at": iso(factor.last_used_at),
    }


def browser_record(browser: RememberedBrowser) -> dict[str, Any]:
    return {
        "id": browser.id,
        "kind": "browser",
        "label": browser.label,
        "network": browser.network,
        "created_at": iso(browser.created_at),
        "last_seen_at": iso(browser.last_seen_at),
        "expires_at": iso(browser.expires_at),
    }


async def _factors(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    factors = await tfa.factors.of_user(args.interface, args.user_id)
    browsers = await tfa.factors.remembered_browsers(args.interface, args.user_id)
    codes = [f for f in factors if f.kind == "recovery"]
    records = [factor_record(f) for f in factors if f.kind != "recovery"]
    if codes:  # one line for the set: its first row's id removes it
        record = factor_record(codes[0])
        record["unused"] = sum(1 for c in codes if c.last_used_at is None)
        record["last_used_at"] = max((iso(c.last_used_at) or "" for c in codes), default="") or None
        records.append(record)
    records += [browser_record(b) for b in browsers]
    for record in records:
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
            continue
        what = record.get("label") or record.get("phone") or ""
        extra = f"{record['unused']} unused" if "unused" in record else ""
        extra += "" if record.get("confirmed", True) else "unconfirmed"
        extra += f"network {record['network']}" if "network" in record else ""
        print(f"{record['id']:>6}  {record['kind']:<8}  {what}  {extra}".rstrip())
    if not records and not args.json:
        print("(no factors)")
    return 0


async def _remove(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    removed = await tfa.factors.remove(args.interface, args.user_id, args.factor_id, request=who())
    if removed is None:
        print(f"tfa-middleware: {args.user_id!r} has no factor {args.factor_id}", file=sys.stderr)
        return 1
    print(
        json.dumps({"removed": removed.id, "kind": removed.kind}) if args.json else f"removed {removed.kind}"
    )
    return 0


async def _forget(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    browser_id = None if args.all else args.browser_id
    count = await tfa.factors.forget_browser(args.interface, args.user_id, browser_id, request=who())
    if not count:
        print(f"tfa-middleware: {args.user_id!r} has no such remembered browser", file=sys.stderr)
        return 1
    print(json.dumps({"forgotten": count}) if args.json else f"{count} browser(s) forgotten")
    return 0


async def _recovery_codes(tfa: TwoFactor, args: argparse.Namespace) -> int:
    if await existing(tfa, args) is None:
        return 1
    codes = await tfa.factors.issue_recovery_codes(args.interface, args.user_id, request=who())
    if args.json:
        print(json.dumps({"codes": codes}))
    else:
        shown = f"{args.interface}/{args.user_id}"
        print(f"New recovery codes for {shown} (shown once; earlier codes no longer work):")
        print("\n".join(codes))
    return 0
