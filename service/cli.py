"""The `smsgw` command: serve, worker, send, stats, history."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from service.accounts import declared_accounts
from service.app import create_app
from service.autoreply import declared_rules
from service.compose import parse_automation
from service.errors import SettingsError, SmsgwError
from service.logging import configure_logging
from service.model import MessageFilter
from service.runtime import running
from service.settings import Settings, load_settings
from service.usecases.messages import message_view, queue_messages, stats_body


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service and the dispatcher")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    commands.add_parser("worker", help="run the dispatcher alone")
    send = commands.add_parser("send", help="queue a message: 'number|text'")
    send.add_argument("automation", help="recipient and text joined by '|'")
    send.add_argument("--account")
    send.add_argument("--sender")
    commands.add_parser("stats", help="print the counters as JSON")
    history = commands.add_parser("history", help="print the newest messages")
    history.add_argument("-n", type=int, default=20)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "serve":
            settings = settings.with_server(args.host, args.port)
        one_shot = args.command not in ("serve", "worker")
        configure_logging(settings.log_format, sys.stderr if one_shot else sys.stdout)
        if args.command == "serve":
            return _serve(settings)
        return asyncio.run(_offline(settings, args))
    except SettingsError as exc:
        print(f"smsgw: {exc}", file=sys.stderr)
        return 2
    except SmsgwError as exc:
        print(f"smsgw: {exc.message}" + (f" ({exc.field})" if exc.field else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(settings: Settings) -> int:
    if not settings.api_tokens:
        raise SettingsError("no API token: set SMSGW_API_TOKENS (comma separated)")
    # Fail here, with a clear message, not inside uvicorn.
    if settings.gateways_file:
        declared_accounts(Path(settings.gateways_file), os.environ)
    if settings.autoreply_file:
        declared_rules(Path(settings.autoreply_file))
    # uvicorn's access log would print callback URLs, whose query holds their secret.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        # Open event streams would otherwise hold a shutdown for as long as they last;
        # their clients resume from Last-Event-ID.
        timeout_graceful_shutdown=5,
    )
    return 0


async def _offline(settings: Settings, args: argparse.Namespace) -> int:
    dispatch = args.command == "worker"
    async with running(settings, dispatch=dispatch) as rt:
        if args.command == "worker":
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        elif args.command == "send":
            number, text = parse_automation(args.automation)
            body = {"to": number, "text": text, "account": args.account, "sender": args.sender}
            given = await queue_messages(rt, {k: v for k, v in body.items() if v is not None})
            print(json.dumps(given, indent=2))
        elif args.command == "stats":
            print(json.dumps(await stats_body(rt), indent=2))
        else:
            rows = await rt.store.list_messages(MessageFilter(), args.n, None)
            for m in rows:
                view = message_view(m)
                print(
                    f"{view['created_at']}  {view['status']:<11} {view['to']:<16} "
                    f"{view['account']:<12} {view['text'][:40]!r}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
