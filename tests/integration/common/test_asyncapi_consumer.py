"""An outside system consumes the lifecycle with plain nats-py, knowing only the AsyncAPI
document: where to connect, which stream and subjects, how to name and set up its consumer,
which headers come and the JSON schema of every payload. What arrives must be what the
document says: every header documented, every payload valid against its schema."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from jsonschema import Draft202012Validator
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from reelvault_common.contracts.events import (
    OrgQuotaExceeded,
    OrgQuotaWarning,
    OrgWebhookEndpointDisabled,
)
from reelvault_common.messaging.asyncapi import render
from reelvault_common.messaging.deadletter import (
    DeadLetter,
    ensure_dead_letter_stream,
    publish_dead_letter,
)
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology, ensure_stream
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

SYSTEM = "acme"


# --- the outside consumer: nats-py, jsonschema and the document, nothing of ours -----------
def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def validator(document: dict[str, Any], ref: str) -> Draft202012Validator:
    # The document's components as the root, so the schemas' own $refs resolve inside it.
    return Draft202012Validator(
        {"$ref": ref, "components": document["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def server_url(document: dict[str, Any], host: str) -> str:
    server = document["servers"]["nats"]
    assert server["variables"]["host"]["default"]  # a consumer without config can connect
    return f"{server['protocol']}://" + server["host"].replace("{host}", host)


def channels_of(document: dict[str, Any], stream: str) -> dict[str, dict[str, Any]]:
    """Subject filter -> the message definition, for every channel stored in ``stream`` (a
    channel parameter such as ``{org}`` becomes a wildcard token: every organization)."""
    return {
        re.sub(r"\{[^}]+\}", "*", channel["address"]): resolve(
            document, next(iter(channel["messages"].values()))["$ref"]
        )
        for channel in document["channels"].values()
        if channel["x-jetstream"]["stream"] == stream
    }


def message_for(by_filter: dict[str, dict[str, Any]], subject: str) -> dict[str, Any]:
    """The message definition of the one channel whose filter matches ``subject``."""
    tokens = subject.split(".")
    (message,) = [
        message for pattern, message in by_filter.items()
        if len(pattern.split(".")) == len(tokens)
        and all(p in ("*", t) for p, t in zip(pattern.split("."), tokens, strict=True))
    ]
    return message


async def subscribe(
    js: JetStreamContext, document: dict[str, Any], stream: str, purpose: str
) -> JetStreamContext.PullSubscription:
    advice = document["x-jetstream"]["consumer"]
    durable = advice["durable_name"].replace("<system>", SYSTEM).replace("<purpose>", purpose)
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy(advice["ack_policy"]),
            deliver_policy=DeliverPolicy(advice["deliver_policy"]["recommended"]),
            filter_subjects=sorted(channels_of(document, stream)),
        ),
    )
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


async def receive(sub: JetStreamContext.PullSubscription, count: int) -> list[Msg]:
    got: list[Msg] = []
    while len(got) < count:
        got.extend(await sub.fetch(batch=count - len(got), timeout=5))
    with pytest.raises(nats.errors.TimeoutError):  # and nothing more
        await sub.fetch(batch=1, timeout=0.5)
    return got


def check(document: dict[str, Any], message: dict[str, Any], msg: Msg) -> dict[str, Any]:
    """Validate headers and payload of ``msg`` against its message definition."""
    headers = dict(msg.headers or {})
    header_schema = resolve(document, message["headers"]["$ref"])
    validator(document, message["headers"]["$ref"]).validate(headers)
    undocumented = set(headers) - set(header_schema["properties"])
    assert not undocumented, f"{msg.subject} carries undocumented headers {undocumented}"
    if "content-type" in header_schema["required"]:
        assert headers["content-type"] == message["contentType"]
    payload = json.loads(msg.data)
    validator(document, message["payload"]["$ref"]).validate(payload)
    return payload


# --- the test --------------------------------------------------------------------------------
async def test_outside_consumer_needs_only_the_asyncapi_document(
    nats_url: str, namespace: str, service_settings: ServiceSettings
) -> None:
    topology = Topology.from_settings(service_settings)
    document = json.loads(render(namespace))
    streams = document["x-jetstream"]["streams"]
    publisher_nc = await nats.connect(service_settings.nats_url)
    consumer_nc = await nats.connect(server_url(document, urlsplit(nats_url).netloc))
    try:
        # Our side: the stream as the services create it, and one lifecycle (twice published
        # where a retry would republish: the duplicate window drops it).
        publisher_js = publisher_nc.jetstream()
        await ensure_stream(publisher_js, topology)
        await ensure_dead_letter_stream(publisher_js, topology)
        done, failed = VideoStory(), VideoStory(correlation_id="corr-2", org="acme")
        quota = {"org": "acme", "quota": "videos_per_month", "period": "2026-01",
                 "used": Decimal("8"), "limit": Decimal("10"), "resets_at": None}
        events = [
            done.requested(), done.requested(), done.waiting(), done.started(),
            done.progressed(40), done.progressed(80), done.completed(), done.stored(),
            done.archive_requested(), done.deleted(),
            failed.requested(), failed.cancel_requested(),
            failed.failed(stage="request", code="moderation_blocked"),
            OrgQuotaWarning.crossed(**quota), OrgQuotaExceeded.crossed(**quota),
            OrgWebhookEndpointDisabled.of(
                org="acme", endpoint_id=uuid.UUID(int=7), reason="failing",
                consecutive_failures=8, failing_since=datetime(2026, 1, 1, tzinfo=UTC),
                disabled_at=datetime(2026, 1, 2, tzinfo=UTC)),
        ]
        publisher = EventPublisher(publisher_nc, topology)
        for event in events:
            await publisher.publish(event)

        # Their side: what the document says about the stream is what the broker has.
        js = consumer_nc.jetstream()
        for described in streams.values():
            config = (await js.stream_info(described["name"])).config
            assert set(config.subjects or []) == set(described["subjects"])
            assert (config.retention, config.storage, config.discard) == (
                described["retention"], described["storage"], described["discard"]
            )
            assert config.max_age == pytest.approx(described["max_age_s"])

        stream = streams["events"]["name"]
        by_subject = channels_of(document, stream)
        unique = {event.event_id for event in events}
        received = await receive(await subscribe(js, document, stream, "lifecycle"), len(unique))
        seen: set[str] = set()
        for msg in received:
            message = message_for(by_subject, msg.subject)
            payload = check(document, message, msg)
            assert payload["type"] == message["title"]
            assert msg.subject.split(".")[2] == payload["org"]  # <namespace>.events.<org>...
            key = payload[document["x-jetstream"]["consumer"]["idempotency_key"]]
            assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == key
            assert msg.headers["correlation_id"] == payload["correlation_id"]
            assert key not in seen
            seen.add(key)
            await msg.ack()
        assert seen == {str(event_id) for event_id in unique}
        assert {json.loads(msg.data)["type"] for msg in received} == {
            message["title"] for message in by_subject.values()
        }

        # A dead letter of ours (here: the completion, given up on by the archiver) reaches
        # the outside consumer of the dead-letter stream with everything needed to act on it.
        original = next(msg for msg in received if msg.subject.endswith(".video.completed"))
        letter = DeadLetter.of(
            consumer=topology.durable("archiver", "completed"),
            subject=original.subject,
            stream_sequence=original.metadata.sequence.stream,
            deliveries=20,
            payload=original.data,
            headers=original.headers,
            error="storage refused the upload",
            video_id=done.video_id,
        )
        await publish_dead_letter(publisher_js, topology, letter)
        dead_stream = streams["dead_letters"]["name"]
        (dead,) = await receive(await subscribe(js, document, dead_stream, "deadletters"), 1)
        payload = check(document, message_for(channels_of(document, dead_stream), dead.subject),
                        dead)
        assert base64.b64decode(payload["payload_b64"]) == original.data
        assert payload["headers"] == original.headers
        await dead.ack()
    finally:
        await consumer_nc.close()
        await publisher_nc.close()
