"""The stream and durable consumers are created, reconciled and publish-deduplicated on a real
JetStream."""

from __future__ import annotations

import logging
import uuid

import nats
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
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
        (topology.subject_for(VideoRequested),),
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
            org="acme",
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
        msg = await js.get_last_msg(topology.stream, topology.subject("video.requested", "acme"))
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == str(event.event_id)
        assert msg.headers["correlation_id"] == "c1"
        assert msg.headers["content-type"] == "application/json"
        assert parse_event(msg.data) == event
    finally:
        await nc.close()


async def test_a_stream_of_the_previous_layout_takes_the_new_subjects(
    service_settings: ServiceSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream and a consumer made when subjects were ``<namespace>.<event type>``: the
    set-up moves both to the organization subjects. Messages stored under the old subjects
    stay in the stream (until max_age) but are consumed no more, and the set-up says so."""
    topology = Topology.from_settings(service_settings)
    old_subjects = [f"{topology.namespace}.video.requested", f"{topology.namespace}.video.stored"]
    durable = topology.durable("svc", "work")
    nc = await nats.connect(service_settings.nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=topology.stream, subjects=old_subjects))
        await js.publish(old_subjects[0], b"{}", stream=topology.stream)
        await js.add_consumer(topology.stream, ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT, filter_subject=old_subjects[0]))

        policy = ConsumerPolicy(durable, (topology.subject_for(VideoRequested),))
        with caplog.at_level(logging.WARNING, logger="reelvault_common.messaging.topology"):
            await prepare_topology(service_settings, topology, [policy])
        assert "1 stored message(s)" in caplog.text and old_subjects[0] in caplog.text

        stream = await js.stream_info(topology.stream)
        assert set(stream.config.subjects or []) == set(topology.stream_subjects)
        assert stream.state.messages == 1  # kept, not consumed
        consumer = await js.consumer_info(topology.stream, durable)
        assert consumer.config.filter_subject == topology.subject_for(VideoRequested)
        assert consumer.num_pending == 0

        event = VideoRequested.new(video_id=uuid.uuid4(), org="acme", correlation_id="c",
                                   prompt="p", model="sora-2", seconds="4", size="720x1280")
        await EventPublisher(nc, topology).publish(event)
        sub = await js.pull_subscribe_bind(durable=durable, stream=topology.stream)
        [msg] = await sub.fetch(batch=2, timeout=2)
        assert msg.subject == topology.subject("video.requested", "acme")
        assert parse_event(msg.data) == event
        await msg.ack()
        # The old subject is no subject of the stream any more.
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await js.publish(old_subjects[0], b"{}", stream=topology.stream, timeout=1)

        caplog.clear()  # a set-up with nothing to move says nothing
        await prepare_topology(service_settings, topology, [policy])
        assert "no longer takes" not in caplog.text
    finally:
        await nc.close()
