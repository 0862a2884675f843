"""Outbound webhooks through the running catalog on a real JetStream and PostgreSQL, to a local
receiver on loopback (a dev deployment): events reach the endpoints of their organization that
take their type, signed (checked with ``standardwebhooks``); 500s and timeouts are retried with
the same ``webhook-id``; a persistently failing endpoint is disabled with an event; a replay
sends again and enables it; a slow endpoint does not delay another; unsafe URLs are refused at
registration and at delivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.tenant import TENANT_ROLE, tenant_transaction
from reelvault_catalog.webhooks.addresses import Resolver, system_resolver
from reelvault_catalog.webhooks.payloads import webhook_message
from reelvault_common.contracts.catalog import (
    CreatedWebhookEndpoint,
    CreateOrg,
    CreateWebhookEndpoint,
    DeleteWebhookEndpoint,
    GetWebhookEndpoint,
    ListWebhookDeliveries,
    ListWebhookEndpoints,
    ReplayWebhookDelivery,
    RpcReply,
    WebhookDeliveryInfo,
    WebhookEventType,
)
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks import Webhook

from tests.support.catalog_events import VideoStory
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.integration

FAST = {"retry_schedule_s": [0.3, 0.3, 0.3], "retry_jitter": 0, "timeout_s": 1.0,
        "connect_timeout_s": 1.0, "poll_s": 0.1}


@dataclass
class Harness:
    service: CatalogService
    topology: Topology
    nc: NatsClient
    publisher: EventPublisher
    receiver: WebhookReceiver

    async def ask(self, message: BaseModel) -> RpcReply:
        subject = self.topology.rpc_subject(message)
        reply = await self.nc.request(subject, message.model_dump_json().encode(), timeout=10)
        return RpcReply.model_validate_json(reply.data)

    async def ok(self, message: BaseModel) -> RpcReply:
        reply = await self.ask(message)
        assert reply.ok, reply
        return reply

    async def endpoint(self, org: str, name: str, *types: WebhookEventType
                       ) -> CreatedWebhookEndpoint:
        reply = await self.ok(CreateWebhookEndpoint(
            org=org, url=self.receiver.url(name),
            event_types=list(types or ("video.completed",)), description=name))
        assert reply.created_webhook_endpoint is not None
        return reply.created_webhook_endpoint

    async def deliveries(self, org: str, endpoint_id: uuid.UUID) -> list[WebhookDeliveryInfo]:
        reply = await self.ok(ListWebhookDeliveries(org=org, endpoint_id=endpoint_id))
        assert reply.webhook_deliveries is not None
        return reply.webhook_deliveries


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(service_settings: ServiceSettings, database_url: str, *,
                  deployment: str = "dev", resolver: Resolver = system_resolver,
                  **webhooks: Any) -> AsyncIterator[Harness]:
    settings = CatalogSettings(
        NATS_URL=service_settings.nats_url, namespace=service_settings.namespace,
        DATABASE_URL=database_url, projection={"workers": 4}, deployment=deployment,
        webhooks={**FAST, **webhooks}, retention_sweep_interval_s=0,
    )
    service = CatalogService(settings, webhook_resolver=resolver)
    async with webhook_receiver() as receiver:
        await service.start()
        nc = await nats.connect(settings.nats_url)
        try:
            topology = Topology.from_settings(settings)
            harness = Harness(service, topology, nc, EventPublisher(nc, topology), receiver)
            for org in ("acme", "globex"):
                await harness.ok(CreateOrg(slug=org))
            yield harness
        finally:
            await nc.close()
            await service.stop()


@pytest.fixture
async def harness(service_settings: ServiceSettings, database_url: str
                  ) -> AsyncIterator[Harness]:
    async with running(service_settings, database_url) as running_harness:
        yield running_harness


async def test_an_event_reaches_the_endpoints_that_take_it_signed(harness: Harness) -> None:
    receiver = harness.receiver
    completed = await harness.endpoint("acme", "acme-completed", "video.completed")
    failures = await harness.endpoint("acme", "acme-failures", "video.failed")
    other_org = await harness.endpoint("globex", "globex-all", "video.completed",
                                       "video.failed")
    story = VideoStory(org="acme")
    stored = story.stored()
    await harness.publisher.publish(stored)

    await until(lambda: len(receiver.of("acme-completed")) == 1)
    [got] = receiver.of("acme-completed")
    payload = Webhook(completed.secret).verify(got.body, got.headers)
    assert payload["type"] == "video.completed"
    assert payload["data"]["id"] == str(story.video_id)
    assert payload["data"]["video"]["sha256"] == stored.video.sha256
    [log] = await harness.deliveries("acme", completed.endpoint.id)
    assert got.headers["webhook-id"] == str(log.id)
    assert (log.status, log.attempts, log.last_response_code) == ("succeeded", 1, 204)
    assert log.event_id == stored.event_id and log.next_attempt_at is None

    await harness.publisher.publish(story.failed())
    await until(lambda: len(receiver.of("acme-failures")) == 1)
    [failed] = receiver.of("acme-failures")
    assert Webhook(failures.secret).verify(failed.body, failed.headers)["type"] == "video.failed"
    await asyncio.sleep(0.5)  # anything wrongly sent would have arrived by now
    assert receiver.of("globex-all") == [] and len(receiver.of("acme-completed")) == 1
    assert await harness.deliveries("globex", other_org.endpoint.id) == []

    # The same event again (a redelivery) records nothing new.
    message = webhook_message(stored, "http://x")
    assert message is not None
    assert await harness.service.webhooks.repository.record(message) == 0
    assert len(await harness.deliveries("acme", completed.endpoint.id)) == 1


async def test_endpoints_are_their_organizations_own(harness: Harness) -> None:
    created = await harness.endpoint("acme", "mine", "video.completed", "quota.warning")
    assert created.secret.startswith("whsec_")
    endpoint_id = created.endpoint.id
    listed = (await harness.ok(ListWebhookEndpoints(org="acme"))).webhook_endpoints
    assert [e.id for e in listed or []] == [endpoint_id]
    assert "secret" not in (listed or [])[0].model_dump()
    assert (await harness.ok(ListWebhookEndpoints(org="globex"))).webhook_endpoints == []
    for message in (GetWebhookEndpoint(org="globex", endpoint_id=endpoint_id),
                    DeleteWebhookEndpoint(org="globex", endpoint_id=endpoint_id),
                    ListWebhookDeliveries(org="globex", endpoint_id=endpoint_id),
                    ReplayWebhookDelivery(org="globex", endpoint_id=endpoint_id,
                                          delivery_id=uuid.uuid4())):
        reply = await harness.ask(message)
        assert reply.error is not None and reply.error.code == "not_found", message
    got = (await harness.ok(GetWebhookEndpoint(org="acme", endpoint_id=endpoint_id)))
    assert got.webhook_endpoint is not None and got.webhook_endpoint.enabled
    await harness.ok(DeleteWebhookEndpoint(org="acme", endpoint_id=endpoint_id))
    reply = await harness.ask(GetWebhookEndpoint(org="acme", endpoint_id=endpoint_id))
    assert reply.error is not None and reply.error.code == "not_found"


async def test_500s_and_timeouts_are_retried_with_the_same_webhook_id(
    service_settings: ServiceSettings, database_url: str
) -> None:
    async with running(service_settings, database_url) as harness:
        receiver = harness.receiver
        receiver.plan("flaky", 500, 503, 200)
        receiver.plan("sleepy", 200, delay_s=3.0, slow_times=1)  # the first one times out
        flaky = await harness.endpoint("acme", "flaky")
        sleepy = await harness.endpoint("acme", "sleepy")
        await harness.publisher.publish(VideoStory(org="acme").stored())

        async def settled() -> bool:
            logs = [*(await harness.deliveries("acme", flaky.endpoint.id)),
                    *(await harness.deliveries("acme", sleepy.endpoint.id))]
            return len(logs) == 2 and all(log.status == "succeeded" for log in logs)
        await until(settled)
        [flaky_log] = await harness.deliveries("acme", flaky.endpoint.id)
        assert (flaky_log.attempts, flaky_log.last_response_code) == (3, 200)
        got = receiver.of("flaky")
        assert len(got) == 3
        assert {r.headers["webhook-id"] for r in got} == {str(flaky_log.id)}
        for request in got:  # every attempt is signed afresh, and each one verifies
            Webhook(flaky.secret).verify(request.body, request.headers)
        assert len({r.body for r in got}) == 1
        [sleepy_log] = await harness.deliveries("acme", sleepy.endpoint.id)
        assert sleepy_log.attempts == 2 and sleepy_log.last_error is None
        sleepy_ids = {r.headers["webhook-id"] for r in receiver.of("sleepy")}
        assert sleepy_ids == {str(sleepy_log.id)}


async def test_a_failing_endpoint_is_disabled_with_an_event_and_a_replay_enables_it(
    service_settings: ServiceSettings, database_url: str
) -> None:
    async with running(service_settings, database_url, disable_after_failures=4,
                       disable_after_s=0) as harness:
        receiver = harness.receiver
        receiver.plan("dead", 500)
        dead = await harness.endpoint("acme", "dead")
        disabled: list[dict[str, Any]] = []

        async def on_disabled(msg: Any) -> None:
            disabled.append(json.loads(msg.data))
        await harness.nc.subscribe(harness.topology.subject("org.webhook_endpoint.disabled",
                                                            "acme"), cb=on_disabled)
        await harness.nc.flush()
        await harness.publisher.publish(VideoStory(org="acme").stored())

        async def given_up() -> bool:
            logs = await harness.deliveries("acme", dead.endpoint.id)
            return len(logs) == 1 and logs[0].status == "failed"
        await until(given_up)
        [log] = await harness.deliveries("acme", dead.endpoint.id)
        assert (log.attempts, log.last_response_code) == (4, 500)  # the whole schedule
        assert len(receiver.of("dead")) == 4
        endpoint = (await harness.ok(GetWebhookEndpoint(org="acme", endpoint_id=dead.endpoint.id)
                                     )).webhook_endpoint
        assert endpoint is not None and not endpoint.enabled
        assert endpoint.disabled_reason == "failing" and endpoint.consecutive_failures == 4
        await until(lambda: len(disabled) == 1)
        assert disabled[0]["endpoint_id"] == str(dead.endpoint.id)
        assert disabled[0]["type"] == "org.webhook_endpoint.disabled"

        # Disabled: a new event is recorded for nobody.
        await harness.publisher.publish(VideoStory(org="acme").stored())
        await asyncio.sleep(0.5)
        assert len(await harness.deliveries("acme", dead.endpoint.id)) == 1

        # Fixed: a replay sends the same delivery (same webhook-id) and enables the endpoint.
        receiver.plan("dead", 200)
        replayed = (await harness.ok(ReplayWebhookDelivery(
            org="acme", endpoint_id=dead.endpoint.id, delivery_id=log.id))).webhook_delivery
        assert replayed is not None and replayed.status == "pending"

        async def delivered() -> bool:
            [again] = await harness.deliveries("acme", dead.endpoint.id)
            return again.status == "succeeded"
        await until(delivered)
        assert receiver.of("dead")[-1].headers["webhook-id"] == str(log.id)
        Webhook(dead.secret).verify(receiver.of("dead")[-1].body, receiver.of("dead")[-1].headers)
        endpoint = (await harness.ok(GetWebhookEndpoint(org="acme", endpoint_id=dead.endpoint.id)
                                     )).webhook_endpoint
        assert endpoint is not None and endpoint.enabled and endpoint.consecutive_failures == 0


async def test_a_slow_endpoint_does_not_delay_another(
    service_settings: ServiceSettings, database_url: str
) -> None:
    async with running(service_settings, database_url, timeout_s=8.0,
                       per_endpoint_concurrency=1, workers=4) as harness:
        receiver = harness.receiver
        receiver.plan("slow", 204, delay_s=4.0)
        receiver.plan("fast", 204)
        await harness.endpoint("acme", "slow")
        await harness.endpoint("acme", "fast")
        started = time.monotonic()
        for _ in range(6):
            await harness.publisher.publish(VideoStory(org="acme").stored())
        await until(lambda: len(receiver.of("fast")) == 6, timeout_s=30)
        # All six reached the fast endpoint while the slow one was still on its first.
        assert time.monotonic() - started < 4.0
        assert receiver.of("slow") == []


async def test_unsafe_urls_are_refused_at_registration_and_at_delivery(
    service_settings: ServiceSettings, database_url: str
) -> None:
    answers = {"hooks.example.test": ["93.184.216.34"]}

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    async with running(service_settings, database_url, deployment="production",
                       resolver=resolve) as harness:
        for url, why in (("http://127.0.0.1:9/x", "https"),
                         ("https://127.0.0.1/x", "loopback"),
                         ("https://10.1.2.3/x", "private"),
                         ("https://169.254.169.254/latest", "link-local"),
                         ("https://[::ffff:192.168.0.1]/x", "private"),
                         ("https://nowhere.example.test/x", "does not resolve")):
            reply = await harness.ask(CreateWebhookEndpoint(
                org="acme", url=url, event_types=["video.completed"]))
            assert reply.error is not None and reply.error.code == "invalid_request", url
            assert why in reply.error.message, (url, reply.error.message)
        assert (await harness.ok(ListWebhookEndpoints(org="acme"))).webhook_endpoints == []

        created = (await harness.ok(CreateWebhookEndpoint(
            org="acme", url="https://hooks.example.test/in", event_types=["video.completed"],
        ))).created_webhook_endpoint
        assert created is not None
        # The name now resolves to this machine: the attempt is refused before connecting.
        answers["hooks.example.test"] = ["127.0.0.1"]
        await harness.publisher.publish(VideoStory(org="acme").stored())

        async def refused() -> bool:
            logs = await harness.deliveries("acme", created.endpoint.id)
            return len(logs) == 1 and logs[0].attempts >= 1
        await until(refused)
        [log] = await harness.deliveries("acme", created.endpoint.id)
        assert log.status == "pending" and log.last_response_code is None
        assert log.last_error is not None and "loopback" in log.last_error


async def test_row_security_hides_other_organizations_endpoints_and_deliveries(
    harness: Harness, database_url: str
) -> None:
    created = await harness.endpoint("acme", "rls")
    await harness.publisher.publish(VideoStory(org="acme").stored())
    await until(lambda: len(harness.receiver.of("rls")) == 1)
    engine = create_async_engine(database_url)
    try:
        for table in ("webhook_endpoints", "webhook_deliveries"):
            seen = {}
            for org in ("acme", "globex"):
                async with tenant_transaction(engine, org) as conn:
                    seen[org] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))
                                 ).scalar_one()
            async with engine.begin() as conn:
                await conn.execute(text(f"SELECT set_config('role', '{TENANT_ROLE}', true)"))
                nobody = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            assert (seen["acme"], seen["globex"], nobody) == (1, 0, 0), table
    finally:
        await engine.dispose()
    assert created.endpoint.org == "acme"
