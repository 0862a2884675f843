"""Starting a durable subscriber and publishing must leave the stream's configuration (set by
``prepare_topology``) untouched: FastStream would otherwise re-declare it with its defaults."""

from __future__ import annotations

import uuid

import nats
import pytest
from faststream.nats import NatsMessage
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.messaging.consuming import (
    EventPublisher,
    durable_subscriber,
    make_broker,
    prepare_topology,
)
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_subscriber_start_keeps_duplicate_window_and_max_age(
    service_settings: ServiceSettings,
) -> None:
    topology = Topology.from_settings(service_settings)
    policy = ConsumerPolicy(topology.durable("svc", "keep"), (topology.subject("video.requested"),))
    await prepare_topology(service_settings, topology, [policy])

    nc = await nats.connect(service_settings.nats_url)
    broker = make_broker(service_settings, "test")

    @durable_subscriber(broker, topology, policy, max_workers=2)
    async def handle(body: bytes, msg: NatsMessage) -> None:
        await msg.ack()

    try:
        js = nc.jetstream()
        before = (await js.stream_info(topology.stream)).config
        await broker.start()
        await EventPublisher(broker, topology).publish(
            VideoRequested.new(video_id=uuid.uuid4(), correlation_id="c", prompt="p",
                               model="sora-2", seconds="4", size="720x1280")
        )
        after = (await js.stream_info(topology.stream)).config
        assert after.duplicate_window == pytest.approx(before.duplicate_window)
        assert after.duplicate_window == pytest.approx(service_settings.stream_duplicate_window_s)
        assert after.max_age == pytest.approx(before.max_age)
        assert set(after.subjects or []) == set(topology.stream_subjects)
    finally:
        await broker.stop()
        await nc.close()
