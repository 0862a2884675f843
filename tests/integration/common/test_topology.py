"""The stream and durable consumers are created, reconciled and publish-deduplicated on a real
JetStream."""

from __future__ import annotations

import uuid

import nats
import pytest
from reelvault_common.contracts.events import VideoRequested, parse_event
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_stream_created_and_consumer_reconciled(service_settings: ServiceSettings) -> None:
    topology = Topology.from_settings(service_settings)
    policy = ConsumerPolicy(
        topology.durable("svc", "work"),
        (topology.subject("video.requested"),),
        ack_wait_s=30,
        max_deliver=5,
    )
    await prepare_topology(service_settings, topology, [policy])

    changed = ConsumerPolicy(
        policy.durable, policy.filter_subjects, ack_wait_s=45, max_deliver=7, max_ack_pending=17
    )
    await prepare_topology(service_settings, topology, [changed])

    nc = await nats.connect(service_settings.nats_url)
    try:
        js = nc.jetstream()
        stream = await js.stream_info(topology.stream)
        assert set(stream.config.subjects or []) == set(topology.stream_subjects)
        assert stream.config.duplicate_window == pytest.approx(60)
        consumer = await js.consumer_info(topology.stream, policy.durable)
        assert consumer.config.ack_wait == pytest.approx(45)
        assert consumer.config.max_deliver == 7
        assert consumer.config.max_ack_pending == 17
    finally:
        await nc.close()


async def test_republished_event_is_dropped_by_duplicate_window(
    service_settings: ServiceSettings,
) -> None:
    topology = Topology.from_settings(service_settings)
    await prepare_topology(service_settings, topology)
    connection = await nats.connect(service_settings.nats_url)
    try:
        publisher = EventPublisher(connection, topology)
        event = VideoRequested.new(
            video_id=uuid.uuid4(),
            correlation_id="c1",
            prompt="a cat",
            model="sora-2",
            seconds="4",
            size="720x1280",
        )
        first = await publisher.publish(event)
        second = await publisher.publish(event)
        assert not first.duplicate
        assert second.duplicate
        assert second.seq == first.seq
    finally:
        await connection.close()

    nc = await nats.connect(service_settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(topology.stream)
        assert info.state.messages == 1
        msg = await js.get_last_msg(topology.stream, topology.subject("video.requested"))
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == str(event.event_id)
        assert msg.headers["correlation_id"] == "c1"
        assert msg.headers["content-type"] == "application/json"
        assert parse_event(msg.data) == event
    finally:
        await nc.close()
