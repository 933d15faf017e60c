"""``tfa-middleware``: the administrator's command line.

tfa-middleware check-config FILE           print the resolved settings, secrets masked, or the errors
tfa-middleware check-config FILE --online  ... and ask the provider whether it accepts the credentials
tfa-middleware doctor --config FILE [--cookie '...'] [--header 'Name: value'] [--path P] [--peer ADDR]
                                           what the middleware makes of a logged-in browser's request,
                                           and the settings that look wrong
tfa-middleware health --config FILE [--online]
                                           exit 0 when the database, its schema and the provider
                                           are ready (one line per check), else 1
tfa-middleware outbox --config FILE        the latest sandbox messages (test mode only: codes included)
tfa-middleware users list|show|set-phone|require-enrollment|reset|delete|unlock --config FILE ...
tfa-middleware users factors|remove-factor|forget-browser|recovery-codes --config FILE ...
tfa-middleware audit --config FILE [--user ID] [--since 7d]
tfa-middleware fake-provider authy|twilio_verify --port N
                                           a fake Authy or Twilio Verify API to try production mode
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from collections.abc import Sequence

import yaml

from . import admin_cli, doctor, factors_cli, health, policy_cli
from .admin_cli import Handler
from .asgi import canonical_path
from .errors import ConfigError, HostilePath, ProviderError, StoreUnavailable
from .settings import Settings, load_settings
from .store import Store, outbox


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfa-middleware", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a settings file")
    check.add_argument("file")
    check.add_argument("--json", action="store_true", help="print the settings as JSON")
    check.add_argument(
        "--online", action="store_true", help="also ask the provider whether it accepts the credentials"
    )
    check.set_defaults(handler=_check_config_command)

    diag = commands.add_parser(
        "doctor", help="what the middleware makes of a logged-in browser's request, and risky settings"
    )
    diag.add_argument("--config", required=True, help="the settings file")
    diag.add_argument(
        "--cookie", type=_cookie, help="the Cookie header of a browser logged in to the shop (never printed)"
    )
    diag.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        help="'Name: value', for from: header; repeatable",
    )
    diag.add_argument(
        "--path", type=_path, help="a protected path, e.g. /admin/orders (default: each interface's prefix)"
    )
    diag.add_argument(
        "--peer",
        type=_address,
        default="127.0.0.1",
        help="the address the request comes from, for from: header (default 127.0.0.1)",
    )
    diag.set_defaults(handler=_doctor_command)

    ready = commands.add_parser(
        "health", help="can this configuration serve a sign-in now? exit 0 or 1, one line per check"
    )
    ready.add_argument("--config", required=True, help="the settings file")
    ready.add_argument("--online", action="store_true", help="also ask the provider (nothing is sent)")
    ready.set_defaults(handler=_health_command)

    out = commands.add_parser("outbox", help="print the sandbox outbox (codes sent in test mode)")
    out.add_argument("--config", required=True, help="the settings file")
    out.add_argument("--limit", type=int, default=10, help="how many of the latest messages (default 10)")
    out.add_argument("--json", action="store_true", help="one JSON object per line")
    out.set_defaults(handler=_outbox_command)

    fake = commands.add_parser(
        "fake-provider", help="run a fake Authy or Twilio Verify API (codes are printed, nothing is sent)"
    )
    fake.add_argument("provider", choices=["authy", "twilio_verify"])
    fake.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    fake.add_argument("--port", type=int, default=8089, help="default 8089; 0 picks a free port")
    fake.set_defaults(handler=_fake_provider_command)

    users = admin_cli.register(commands)
    factors_cli.register(users)
    policy_cli.register(commands, users)

    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"tfa-middleware: {exc}", file=sys.stderr)
        return 1


def _shop_importable() -> None:
    # uvicorn and gunicorn put the working directory on sys.path: the shop's callables must
    # import here as they do at start (the installed script's sys.path[0] is its bin folder).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _check_config_command(args: argparse.Namespace) -> int:
    _shop_importable()
    code = _check_config(args.file, args.json)
    return asyncio.run(_check_online(load_settings(args.file))) if args.online else code


def _doctor_command(args: argparse.Namespace) -> int:
    _shop_importable()
    settings = load_settings(args.config)
    return asyncio.run(
        doctor.doctor(settings, cookie=args.cookie, headers=args.header, path=args.path, peer=args.peer)
    )


def _health_command(args: argparse.Namespace) -> int:
    return asyncio.run(health.health(load_settings(args.config), online=args.online))


def _fake_provider_command(args: argparse.Namespace) -> int:
    return _fake_provider(args.provider, args.host, args.port)


def _outbox_command(args: argparse.Namespace) -> int:
    return asyncio.run(_outbox(load_settings(args.config), args.limit, args.json))


def _check_config(path: str, as_json: bool) -> int:
    settings = load_settings(path)
    # What would stop the server at start (a callable that cannot be imported, a missing extra,
    # Django not set up): say so now, by key path.
    problems = doctor.start_problems(settings)
    if problems:
        raise ConfigError(problems, path)
    described = settings.describe()
    if as_json:
        print(json.dumps(described, indent=2))
    else:
        print(f"# {path}: valid\n" + yaml.safe_dump(described, sort_keys=False, allow_unicode=True), end="")
    return 0


async def _check_online(settings: Settings) -> int:
    from .providers.build import remote_provider

    provider = remote_provider(settings)
    if provider is None:
        print(
            "# online: production_mode is false, so the sandbox is used and nothing is sent: nothing to check"
        )
        return 0
    try:
        print(f"# online: {await provider.check_credentials()}")
        return 0
    except ProviderError as exc:
        print(f"tfa-middleware: {exc}", file=sys.stderr)
        return 1
    finally:
        await provider.close()


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or " " in name.strip():
        raise argparse.ArgumentTypeError("expected 'Name: value'")
    return name.strip(), value.strip()


def _cookie(text: str) -> str:
    # Copied from the browser's developer tools with its name or without: both work.
    text = text.strip()
    return text[len("cookie:") :].strip() if text.lower().startswith("cookie:") else text


def _path(text: str) -> str:
    try:
        if text.startswith("/"):
            canonical_path(text)
            return text
    except HostilePath:
        pass
    raise argparse.ArgumentTypeError("expected a path such as /admin/orders")


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError("expected an IP address such as 127.0.0.1") from None


def _fake_provider(name: str, host: str, port: int) -> int:
    from .testing import (
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        FAKE_AUTHY_API_KEY,
        FAKE_SERVICE_SID,
        FakeAuthy,
        FakeTwilioVerify,
        SentCode,
    )
    from .testing.server import run

    def show(sent: SentCode) -> None:
        # A fake's codes are the whole point: they are printed, as the sandbox outbox shows them.
        print(f"{name}: {sent.channel} to {sent.to}: code {sent.code}", flush=True)

    if name == "authy":
        app: FakeAuthy | FakeTwilioVerify = FakeAuthy(on_send=show)
        settings = f"  name: authy\n  api_key: {FAKE_AUTHY_API_KEY}"
    else:
        app = FakeTwilioVerify(on_send=show)
        settings = (
            f"  name: twilio_verify\n  account_sid: {FAKE_ACCOUNT_SID}\n"
            f"  auth_token: {FAKE_AUTH_TOKEN}\n  service_sid: {FAKE_SERVICE_SID}"
        )

    def ready(url: str) -> None:
        print(
            f"fake {name} API listening on {url} (Ctrl-C stops it). Settings to use it:\n"
            f"provider:\n{settings}\n  production_mode: true\n  api_url: {url}",
            flush=True,
        )

    run(app, host=host, port=port, on_ready=ready, log_level="warning")
    return 0


async def _outbox(settings: Settings, limit: int, as_json: bool) -> int:
    if settings.provider.production_mode:
        print("tfa-middleware: production_mode is on; there is no sandbox outbox", file=sys.stderr)
        return 1
    store = Store(settings.database_url.reveal())
    try:
        messages = await outbox.latest(store, max(1, limit))
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
