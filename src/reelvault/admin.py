"""Operator commands: ``reelvault orgs|keys|quotas|flags ...`` (``orgs set-retention`` too).

They reach the system through NATS, with the same environment variables as the services
(``NATS_URL``, ``REELVAULT_NAMESPACE``); from the folder where ``reelvault up`` runs they need
none (``local_system``). Organizations, keys and quotas are the catalog's (asked over its
request/reply subjects); flags live in a NATS KV bucket. Bad input exits non-zero with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from pydantic import BaseModel
from reelvault_common.contracts.catalog import (
    ApiKeyInfo,
    CreateKey,
    CreateOrg,
    GetUsage,
    ListKeys,
    ListOrgs,
    QuotaLimits,
    RevokeKey,
    RpcReply,
    SetQuotas,
    SetRetention,
)
from reelvault_common.contracts.flags import FLAG_NAMES
from reelvault_common.contracts.tenancy import DEFAULT_SCOPES, Scope, is_valid_slug
from reelvault_common.messaging.flags import open_flags_bucket, read_flags, set_flag
from reelvault_common.messaging.nats_client import NatsUnreachable, connect_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from reelvault.local_system import system_environment

T = TypeVar("T")


class CommandFailed(Exception):
    """One line for the operator; the command exits 1."""


class BadInput(CommandFailed):
    """The command line itself is wrong; the command exits 2."""


def checked_slug(value: str) -> str:
    """``value`` if it is a valid organization slug; ``BadInput`` (one line) otherwise."""
    if not is_valid_slug(value):
        raise BadInput(
            f"invalid slug {value!r}: use 3 to 40 lowercase letters, digits and hyphens "
            "(no hyphen at either end)"
        )
    return value


class Session:
    """One NATS connection for one command."""

    def __init__(self, connection: Client, topology: Topology, timeout_s: float) -> None:
        self.connection = connection
        self.topology = topology
        self.timeout_s = timeout_s

    async def ask(self, message: BaseModel) -> RpcReply:
        subject = self.topology.rpc_subject(message)
        try:
            raw = await self.connection.request(
                subject, message.model_dump_json().encode(), timeout=self.timeout_s
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            raise CommandFailed(
                "no catalog answered: is the system running (`make run`) and NATS_URL right?"
            ) from None
        reply = RpcReply.model_validate_json(raw.data)
        if not reply.ok:
            error = reply.error
            raise CommandFailed(error.message if error is not None else "the catalog refused")
        return reply


def run_with_session(
    data_dir: Path, work: Callable[[Session], Awaitable[T]], env: Mapping[str, str] | None = None
) -> T:
    """Run ``work`` with a connection to the system (``env``, else the process environment,
    completed by what a system running from ``data_dir`` recorded)."""
    env = system_environment(data_dir, os.environ if env is None else env)
    settings = ServiceSettings.model_validate({
        "NATS_URL": env.get("NATS_URL", "nats://127.0.0.1:4222"),
        "namespace": env.get("REELVAULT_NAMESPACE", "reelvault"),
    })

    async def main() -> T:
        try:
            connection = await connect_nats(
                settings.nats_servers, name="reelvault-cli", max_reconnect_attempts=0
            )
        except (NatsUnreachable, OSError) as exc:
            raise CommandFailed(
                f"cannot reach NATS at {settings.nats_url_for_logs} ({exc}); is the system "
                "running (`make run`) or NATS_URL set?"
            ) from None
        try:
            return await work(Session(connection, Topology.from_settings(settings),
                                      settings.rpc_timeout_s))
        finally:
            await connection.close()

    return asyncio.run(main())


def format_utc(moment: datetime | None) -> str:
    """A moment as the commands print it (UTC, to the second); ``-`` for none."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` (the first: the headings) as columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())


# --- orgs --------------------------------------------------------------------------------
def orgs_create(args: argparse.Namespace) -> int:
    slug = checked_slug(args.slug)

    async def work(session: Session) -> None:
        reply = await session.ask(CreateOrg(slug=slug, name=args.name or slug))
        assert reply.org is not None
        print(f"created organization {reply.org.slug} ({reply.org.id})")

    run_with_session(args.data_dir, work)
    return 0


def orgs_list(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        orgs = (await session.ask(ListOrgs())).orgs or []
        rows = [["SLUG", "NAME", "CREATED", "ID", "RETENTION"]]
        rows += [[o.slug, o.name, format_utc(o.created_at), str(o.id),
                  f"{o.delete_after_days} days" if o.delete_after_days else "forever"]
                 for o in orgs]
        print_table(rows)

    run_with_session(args.data_dir, work)
    return 0


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 0 <= days <= 36500:
        raise argparse.ArgumentTypeError("days must be between 0 (keep forever) and 36500")
    return days


def orgs_set_retention(args: argparse.Namespace) -> int:
    slug = checked_slug(args.slug)

    async def work(session: Session) -> None:
        reply = await session.ask(SetRetention(org=slug, delete_after_days=args.days))
        assert reply.org is not None
        days = reply.org.delete_after_days
        print(f"organization {slug}: " + (f"videos are deleted {days} days after they were "
                                          "requested" if days else "videos are kept forever"))

    run_with_session(args.data_dir, work)
    return 0


# --- keys --------------------------------------------------------------------------------
def _key_line(key: ApiKeyInfo) -> list[str]:
    state = "revoked" if key.revoked_at else (
        "expired" if key.expires_at and key.expires_at <= datetime.now(UTC) else "active")
    return [key.public_id, key.name or "-", ",".join(key.scopes), state, format_utc(key.created_at),
            format_utc(key.last_used_at), format_utc(key.expires_at)]


def keys_create(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)
    scopes = [Scope(s) for s in (args.scope or DEFAULT_SCOPES)]
    if args.expires_in_days is not None and args.expires_in_days <= 0:
        raise BadInput("--expires-in-days must be a positive number of days")
    expires = (datetime.now(UTC) + timedelta(days=args.expires_in_days)
               if args.expires_in_days is not None else None)

    async def work(session: Session) -> None:
        reply = await session.ask(
            CreateKey(org=org, name=args.name or "", scopes=scopes, expires_at=expires)
        )
        created = reply.created_key
        assert created is not None
        info = created.key
        print(f"created key {info.public_id} for {info.org} (scopes {','.join(info.scopes)}, "
              f"expires {format_utc(info.expires_at)}); it is shown once, keep it now:")
        print(created.secret)

    run_with_session(args.data_dir, work)
    return 0


def keys_list(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)

    async def work(session: Session) -> None:
        keys = (await session.ask(ListKeys(org=org))).keys or []
        rows = [["ID", "NAME", "SCOPES", "STATE", "CREATED", "LAST USED", "EXPIRES"]]
        print_table(rows + [_key_line(key) for key in keys])

    run_with_session(args.data_dir, work)
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        reply = await session.ask(RevokeKey(key_or_id=args.key_or_id))
        assert reply.key is not None
        print(f"revoked key {reply.key.public_id} of {reply.key.org} at "
              f"{format_utc(reply.key.revoked_at)}")

    run_with_session(args.data_dir, work)
    return 0


# --- quotas ------------------------------------------------------------------------------
def parse_limit(kind: type[int] | type[Decimal]) -> Callable[[str], int | Decimal | None]:
    """A limit on the command line: a non-negative number, or ``none`` to remove it."""

    def parse(text: str) -> int | Decimal | None:
        if text.strip().lower() == "none":
            return None
        try:
            value = kind(text)
        except (ValueError, InvalidOperation):
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
        return value

    return parse


QUOTA_OPTIONS = {
    "videos_per_month": int,
    "generation_seconds_per_month": int,
    "cost_usd_per_month": Decimal,
    "storage_bytes": int,
}


def quotas_set(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)
    given = {name: getattr(args, name) for name in QUOTA_OPTIONS
             if getattr(args, name) is not _UNSET}
    if not given:
        raise BadInput("name at least one limit, e.g. --videos-per-month 100")

    async def work(session: Session) -> None:
        await session.ask(SetQuotas(org=org, limits=QuotaLimits(**given)))
        await _show_usage(session, org)

    run_with_session(args.data_dir, work)
    return 0


async def _show_usage(session: Session, org: str) -> None:
    usage = (await session.ask(GetUsage(org=org))).usage
    assert usage is not None
    rows = [["QUOTA", "USED", "LIMIT", "RESETS"]]
    for item in usage.items:
        limit = "-" if item.limit is None else str(item.limit)
        rows.append([item.quota, str(item.used), limit, format_utc(item.resets_at)])
    print(f"{usage.org}: usage since {format_utc(usage.period_start)}")
    print_table(rows)


def quotas_show(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)

    async def work(session: Session) -> None:
        await _show_usage(session, org)

    run_with_session(args.data_dir, work)
    return 0


# --- flags -------------------------------------------------------------------------------
def flags_set(args: argparse.Namespace) -> int:
    name = args.flag
    value: bool | list[str]
    if name == "whitelist":
        if args.state is not None or args.orgs is None:
            raise BadInput("use: reelvault flags set whitelist --orgs a,b (empty turns it off)")
        value = [checked_slug(slug.strip()) for slug in args.orgs.split(",") if slug.strip()]
    else:
        if args.state not in ("on", "off") or args.orgs is not None:
            raise BadInput(f"use: reelvault flags set {name} on|off")
        value = args.state == "on"

    async def work(session: Session) -> None:
        bucket = await open_flags_bucket(session.connection, session.topology)
        await set_flag(bucket, name, value)
        print(f"{name} = {_flag_text(value)}")

    run_with_session(args.data_dir, work)
    return 0


def _flag_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    listed = list(value) if isinstance(value, (list, tuple)) else []
    return ",".join(listed) if listed else "off (every organization may create)"


def flags_list(args: argparse.Namespace) -> int:
    async def work(session: Session) -> None:
        flags = await read_flags(await open_flags_bucket(session.connection, session.topology))
        print_table([["FLAG", "VALUE"]]
               + [[name, _flag_text(getattr(flags, name))] for name in FLAG_NAMES])

    run_with_session(args.data_dir, work)
    return 0


# --- the parser --------------------------------------------------------------------------
_UNSET = object()


def add_admin_commands(commands: Any) -> None:
    """Add the operator commands to ``commands`` (what ``add_subparsers`` returned)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Path(".reelvault"),
                        help="the folder of a system started with `reelvault up`")
    orgs = commands.add_parser("orgs", help="organizations").add_subparsers(
        dest="action", required=True)
    create = orgs.add_parser("create", parents=[common], help="create an organization")
    create.add_argument("slug")
    create.add_argument("--name")
    create.set_defaults(handler=orgs_create)
    orgs.add_parser("list", parents=[common], help="list organizations").set_defaults(
        handler=orgs_list)
    retention = orgs.add_parser("set-retention", parents=[common],
                                help="delete the organization's videos older than DAYS days "
                                "(0: keep forever)")
    retention.add_argument("slug")
    retention.add_argument("days", type=_days)
    retention.set_defaults(handler=orgs_set_retention)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action",
                                                                        required=True)
    create = keys.add_parser("create", parents=[common],
                             help="create a key (printed once, alone on the last line)")
    create.add_argument("--org", required=True)
    create.add_argument("--scope", action="append", choices=[s.value for s in Scope])
    create.add_argument("--name")
    create.add_argument("--expires-in-days", type=float)
    create.set_defaults(handler=keys_create)
    listing = keys.add_parser("list", parents=[common], help="list an organization's keys")
    listing.add_argument("--org", required=True)
    listing.set_defaults(handler=keys_list)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key (by key or id)")
    revoke.add_argument("key_or_id")
    revoke.set_defaults(handler=keys_revoke)

    quotas = commands.add_parser("quotas", help="per-organization limits").add_subparsers(
        dest="action", required=True)
    setting = quotas.add_parser("set", parents=[common],
                                help="set limits (a number, or `none` to remove one)")
    setting.add_argument("--org", required=True)
    for name, kind in QUOTA_OPTIONS.items():
        setting.add_argument("--" + name.replace("_", "-"), dest=name, type=parse_limit(kind),
                             default=_UNSET)
    setting.set_defaults(handler=quotas_set)
    show = quotas.add_parser("show", parents=[common], help="usage and limits")
    show.add_argument("--org", required=True)
    show.set_defaults(handler=quotas_show)

    flags = commands.add_parser("flags", help="runtime flags").add_subparsers(
        dest="action", required=True)
    setting = flags.add_parser("set", parents=[common], help="switch a flag")
    setting.add_argument("flag", choices=list(FLAG_NAMES))
    setting.add_argument("state", nargs="?", help="on or off (maintenance, coming_soon)")
    setting.add_argument("--orgs", help="whitelist: comma-separated slugs (empty: off)")
    setting.set_defaults(handler=flags_set)
    flags.add_parser("list", parents=[common], help="show the flags").set_defaults(
        handler=flags_list)


def run_admin(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except BadInput as exc:
        print(f"reelvault: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"reelvault: {exc}", file=sys.stderr)
        return 1
