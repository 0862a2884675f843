"""Operator commands for webhook endpoints: ``reelvault webhooks add|list|remove|deliveries|
replay`` (the same as ``/v1/webhook-endpoints``, for any organization, asked of the catalog
over NATS like the other operator commands)."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import (
    WEBHOOK_EVENT_TYPES,
    CreateWebhookEndpoint,
    DeleteWebhookEndpoint,
    ListWebhookDeliveries,
    ListWebhookEndpoints,
    ReplayWebhookDelivery,
    WebhookDeliveryInfo,
    WebhookEndpointInfo,
)

from reelvault.admin import (
    BadInput,
    Session,
    checked_slug,
    format_utc,
    print_table,
    run_with_session,
)

M = TypeVar("M", bound=BaseModel)


def _request(kind: type[M], **fields: Any) -> M:
    """The request to send, checked before anything is asked: ``BadInput`` names the first
    field that is wrong (e.g. an empty URL, a description over 500 characters)."""
    try:
        return kind(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]).replace("_", " ") or "input"
        raise BadInput(f"invalid {where}: {error['msg']}") from None


def _id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadInput(f"not a {what} id: {value!r}") from None


def _endpoint_line(endpoint: WebhookEndpointInfo) -> list[str]:
    state = "enabled" if endpoint.enabled else f"disabled ({endpoint.disabled_reason or '-'})"
    return [str(endpoint.id), endpoint.url, ",".join(endpoint.event_types), state,
            str(endpoint.consecutive_failures), format_utc(endpoint.created_at),
            endpoint.description or "-"]


def _delivery_line(delivery: WebhookDeliveryInfo) -> list[str]:
    code = "-" if delivery.last_response_code is None else str(delivery.last_response_code)
    return [str(delivery.id), delivery.event_type, delivery.status, str(delivery.attempts),
            code, format_utc(delivery.last_attempt_at), format_utc(delivery.next_attempt_at),
            (delivery.last_error or "-")[:60]]


def webhooks_add(args: argparse.Namespace) -> int:
    request = _request(CreateWebhookEndpoint, org=checked_slug(args.org), url=args.url,
                       event_types=list(dict.fromkeys(args.event or WEBHOOK_EVENT_TYPES)),
                       description=args.description or "")

    async def work(session: Session) -> None:
        reply = await session.ask(request)
        created = reply.created_webhook_endpoint
        assert created is not None
        endpoint = created.endpoint
        print(f"created webhook endpoint {endpoint.id} for {endpoint.org} "
              f"({','.join(endpoint.event_types)}); its signing secret is shown once, "
              "keep it now:")
        print(created.secret)

    run_with_session(args.data_dir, work)
    return 0


def webhooks_list(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)

    async def work(session: Session) -> None:
        endpoints = (await session.ask(ListWebhookEndpoints(org=org))).webhook_endpoints or []
        rows = [["ID", "URL", "EVENTS", "STATE", "FAILURES", "CREATED", "DESCRIPTION"]]
        print_table(rows + [_endpoint_line(endpoint) for endpoint in endpoints])

    run_with_session(args.data_dir, work)
    return 0


def webhooks_remove(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)
    endpoint_id = _id(args.endpoint_id, "webhook endpoint")

    async def work(session: Session) -> None:
        reply = await session.ask(DeleteWebhookEndpoint(org=org, endpoint_id=endpoint_id))
        assert reply.webhook_endpoint is not None
        print(f"removed webhook endpoint {reply.webhook_endpoint.id} of {org}")

    run_with_session(args.data_dir, work)
    return 0


def webhooks_deliveries(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)
    endpoint_id = _id(args.endpoint_id, "webhook endpoint")
    if not 1 <= args.limit <= 200:
        raise BadInput("--limit must be between 1 and 200")

    async def work(session: Session) -> None:
        found = (await session.ask(ListWebhookDeliveries(
            org=org, endpoint_id=endpoint_id, limit=args.limit))).webhook_deliveries or []
        rows = [["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST CODE", "LAST ATTEMPT",
                 "NEXT ATTEMPT", "LAST ERROR"]]
        print_table(rows + [_delivery_line(delivery) for delivery in found])

    run_with_session(args.data_dir, work)
    return 0


def webhooks_replay(args: argparse.Namespace) -> int:
    org = checked_slug(args.org)
    endpoint_id = _id(args.endpoint_id, "webhook endpoint")
    delivery_id = _id(args.delivery_id, "webhook delivery")

    async def work(session: Session) -> None:
        reply = await session.ask(ReplayWebhookDelivery(
            org=org, endpoint_id=endpoint_id, delivery_id=delivery_id))
        assert reply.webhook_delivery is not None
        print(f"replaying webhook delivery {reply.webhook_delivery.id} "
              f"({reply.webhook_delivery.event_type}) to endpoint {endpoint_id} now")

    run_with_session(args.data_dir, work)
    return 0


def add_webhook_commands(commands: Any) -> None:
    """Add ``webhooks ...`` to ``commands`` (what ``add_subparsers`` returned)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Path(".reelvault"),
                        help="the folder of a system started with `reelvault up`")
    common.add_argument("--org", required=True)
    webhooks = commands.add_parser("webhooks", help="outbound webhook endpoints"
                                   ).add_subparsers(dest="action", required=True)
    add = webhooks.add_parser("add", parents=[common],
                              help="add an endpoint (its secret alone on the last line, once)")
    add.add_argument("--url", required=True)
    add.add_argument("--event", action="append", choices=list(WEBHOOK_EVENT_TYPES),
                     help="an event type to send (repeat; default: every type)")
    add.add_argument("--description")
    add.set_defaults(handler=webhooks_add)
    webhooks.add_parser("list", parents=[common], help="list the endpoints").set_defaults(
        handler=webhooks_list)
    remove = webhooks.add_parser("remove", parents=[common], help="remove an endpoint")
    remove.add_argument("endpoint_id")
    remove.set_defaults(handler=webhooks_remove)
    deliveries = webhooks.add_parser("deliveries", parents=[common],
                                     help="an endpoint's delivery log, newest first")
    deliveries.add_argument("endpoint_id")
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.set_defaults(handler=webhooks_deliveries)
    replay = webhooks.add_parser("replay", parents=[common], help="send one delivery again")
    replay.add_argument("endpoint_id")
    replay.add_argument("delivery_id")
    replay.set_defaults(handler=webhooks_replay)
