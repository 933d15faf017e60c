"""``tfa-middleware``: the administrator's command line.

tfa-middleware check-config FILE           print the resolved settings, secrets masked, or the errors
tfa-middleware outbox --config FILE        the latest sandbox messages (test mode only: codes included)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

import yaml

from .errors import ConfigError, StoreUnavailable
from .settings import Settings, load_settings
from .store import Store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfa-middleware", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a settings file")
    check.add_argument("file")
    check.add_argument("--json", action="store_true", help="print the settings as JSON")

    out = commands.add_parser("outbox", help="print the sandbox outbox (codes sent in test mode)")
    out.add_argument("--config", required=True, help="the settings file")
    out.add_argument("--limit", type=int, default=10, help="how many of the latest messages (default 10)")
    out.add_argument("--json", action="store_true", help="one JSON object per line")

    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file, args.json)
        return asyncio.run(_outbox(load_settings(args.config), args.limit, args.json))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"tfa-middleware: {exc}", file=sys.stderr)
        return 1


def _check_config(path: str, as_json: bool) -> int:
    settings = load_settings(path)
    described = settings.describe()
    if as_json:
        print(json.dumps(described, indent=2))
    else:
        print(f"# {path}: valid\n" + yaml.safe_dump(described, sort_keys=False, allow_unicode=True), end="")
    return 0


async def _outbox(settings: Settings, limit: int, as_json: bool) -> int:
    if settings.provider.production_mode:
        print("tfa-middleware: production_mode is on; there is no sandbox outbox", file=sys.stderr)
        return 1
    store = Store(settings.database_url.reveal())
    try:
        messages = await store.latest_outbox(max(1, limit))
    finally:
        await store.close()
    for m in messages:
        if as_json:
            print(
                json.dumps(
                    {
                        "id": m.id,
                        "at": m.created_at,
                        "interface": m.interface,
                        "user_id": m.user_id,
                        "to": m.to_masked,
                        "channel": m.channel,
                        "body": m.body,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created_at))
            print(f"{when}  {m.interface}/{m.user_id}  {m.channel} to {m.to_masked}\n    {m.body}")
    if not messages and not as_json:
        print("(the outbox is empty: ask for a code on the challenge page first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
