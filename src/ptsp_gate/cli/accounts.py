"""`ptsp-gate officer add|disable|list|token`: the officer console's accounts. Every change is
written to the audit record with the operating-system user who made it."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptsp_gate.cli.common import REGION, CommandError, bounded, on_database, subcommands
from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

USERNAME_RULE = "1 to 63 of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
_MAX_PASSWORD_INPUT = 1024


def _username(value: str) -> str:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,62}", value):
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a username ({USERNAME_RULE})")
    return value


def add_parser(sub: Subcommands) -> None:
    from ptsp_gate.accounts.roles import Role

    parser = sub.add_parser(
        "officer",
        help="accounts of the officer console: add, disable, list, API tokens",
        description="Accounts of the officer console and its API. Each change is written to the "
        "audit record.",
    )
    commands = subcommands(parser, "officer_command")

    add = commands.add_parser(
        "add",
        help="add an account",
        description="Add an account. The password is read from standard input (asked twice on "
        "a terminal) or from --password-file; never from the command line, where `ps` and the "
        "shell's history would show it.",
    )
    add.set_defaults(handler=add_officer)
    add.add_argument("username", type=_username)
    add.add_argument(
        "--region",
        type=REGION,
        action="append",
        default=[],
        help="a region the account works for (repeat for more); every role but admin needs one",
    )
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--password-file", type=Path, metavar="FILE")
    add.add_argument(
        "--sso-subject",
        metavar="SUB",
        help="sign in through the province's single sign-on (its `sub` claim) instead of a "
        "password",
    )

    disable = commands.add_parser(
        "disable", help="disable an account: its sessions and API tokens end at once"
    )
    disable.set_defaults(handler=disable_officer)
    disable.add_argument("username", type=_username)

    listing = commands.add_parser("list", help="every account, its role and regions")
    listing.set_defaults(handler=list_officers)
    listing.add_argument("--format", choices=("table", "json"), default="table")

    token = commands.add_parser(
        "token",
        help="print a new API token for an account (shown once, stored hashed)",
        description="Print a new API token for the licensing office's systems to call the API "
        "with (`Authorization: Bearer TOKEN`), with the account's role and regions. It is shown "
        "once: only a hash of it is stored. Disabling the account revokes it.",
    )
    token.set_defaults(handler=issue_token)
    token.add_argument("username", type=_username)
    token.add_argument(
        "--ttl", type=bounded(1, 366), default=90, metavar="DAYS", help="days it is valid (90)"
    )


def _actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            with args.password_file.open(encoding="utf-8") as f:
                text = f.read(_MAX_PASSWORD_INPUT + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(
                f"--password-file: cannot read {args.password_file}: {type(exc).__name__}"
            ) from None
        lines = text.splitlines()
        password = lines[0] if lines else ""
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CommandError("the two passwords differ")
    else:
        password = sys.stdin.readline(_MAX_PASSWORD_INPUT + 1).rstrip("\r\n")
    if len(password) > _MAX_PASSWORD_INPUT:
        raise CommandError("the password is longer than any this command accepts")
    return password


async def add_officer(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.accounts import credentials
    from ptsp_gate.accounts.roles import Role
    from ptsp_gate.stores import accounts, audit

    role = Role(args.role)
    if role is not Role.ADMIN and not args.region:
        raise CommandError(f"a {role.value} needs at least one --region")
    if args.sso_subject is not None:
        if args.password_file is not None:
            raise CommandError("--sso-subject and --password-file exclude each other")
        if not 1 <= len(args.sso_subject) <= 255:
            raise CommandError("--sso-subject: give 1 to 255 characters")
        password_hash = None
    else:
        try:
            password_hash = credentials.hash_password(_read_password(args))
        except credentials.WeakPassword as exc:
            raise CommandError(str(exc)) from None

    async def work(conn: Any) -> accounts.Account:
        async with conn.transaction():
            account = await accounts.add(
                conn,
                args.username,
                role,
                sorted(set(args.region)),
                password_hash,
                oidc_subject=args.sso_subject,
            )
            await audit.record(
                conn,
                audit.Event(
                    actor=_actor(),
                    action=audit.Action.OFFICER_ADDED,
                    channel="cli",
                    subject=account.username,
                    regions=account.regions,
                    detail={"role": role.value, "sso": args.sso_subject is not None},
                ),
            )
        return account

    try:
        account = await on_database(settings, work)
    except accounts.AccountError as exc:
        raise CommandError(str(exc)) from None
    regions = ", ".join(account.regions) or "every region"
    print(f"added {account.username} ({account.role.value}; {regions})", file=sys.stderr)
    return 0


async def disable_officer(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.stores import accounts, audit

    async def work(conn: Any) -> accounts.Account:
        async with conn.transaction():
            account = await accounts.disable(conn, args.username)
            await audit.record(
                conn,
                audit.Event(
                    actor=_actor(),
                    action=audit.Action.OFFICER_DISABLED,
                    channel="cli",
                    subject=account.username,
                    regions=account.regions,
                ),
            )
        return account

    try:
        await on_database(settings, work)
    except accounts.AccountError as exc:
        raise CommandError(str(exc)) from None
    print(f"disabled {args.username}: its sessions and API tokens have ended", file=sys.stderr)
    return 0


async def list_officers(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.stores import accounts

    found = [accounts.public(a) for a in await on_database(settings, accounts.listing)]
    if args.format == "json":
        print(json.dumps(found, default=str, indent=2))
        return 0
    heading = ("username", "role", "regions", "state", "last_login_at")
    rows = [heading]
    for a in found:
        state = "disabled" if a["disabled_at"] else "locked" if a["locked_until"] else "active"
        last = a["last_login_at"].isoformat(timespec="seconds") if a["last_login_at"] else "-"
        rows.append((a["username"], a["role"], ",".join(a["regions"]) or "*", state, last))
    widths = [max(len(r[i]) for r in rows) for i in range(len(heading))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


async def issue_token(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.stores import accounts, audit

    async def work(conn: Any) -> tuple[str, Any]:
        async with conn.transaction():
            token, expires = await accounts.issue_token(
                conn, args.username, timedelta(days=args.ttl)
            )
            account = await accounts.by_username(conn, args.username)
            assert account is not None
            await audit.record(
                conn,
                audit.Event(
                    actor=_actor(),
                    action=audit.Action.TOKEN_ISSUED,
                    channel="cli",
                    subject=args.username,
                    regions=account.regions,
                    detail={"expires_at": expires.isoformat()},
                ),
            )
        return token, expires

    try:
        token, expires = await on_database(settings, work)
    except accounts.AccountError as exc:
        raise CommandError(str(exc)) from None
    print(token)
    print(f"valid until {expires.isoformat(timespec='seconds')}; shown once", file=sys.stderr)
    return 0
