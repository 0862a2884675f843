"""A message that keeps failing ends in the dead-letter stream with its payload and last
error, the video is marked failed, and a replay puts it back on its original subject."""

from __future__ import annotations

import asyncio
import json
import uuid

import nats
import pytest
from reelvault_common.contracts.events import VideoRequested, parse_event
from reelvault_common.messaging.consumer import Consumer, ConsumerRunner, Delivery
from reelvault_common.messaging.deadletter import list_dead_letters, replay_dead_letters
from reelvault_common.messaging.outcomes import RetryPacing
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def wait_until(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_dead_letter_replayed_after_the_fix_is_handled(
    service_settings: ServiceSettings,
) -> None:
    topology = Topology.from_settings(service_settings)
    policy = ConsumerPolicy(topology.durable("test", "poison"),
                            (topology.subject_for(VideoRequested),), ack_wait_s=2, max_deliver=3)
    await prepare_topology(service_settings, topology, [policy])
    connection = await nats.connect(service_settings.nats_url)
    publisher = EventPublisher(connection, topology)
    attempts: list[int] = []
    subjects: list[str] = []
    healed = asyncio.Event()
    fail = True

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        subjects.append(delivery.subject)
        if fail:
            raise ValueError("cannot digest this")
        healed.set()

    consumer = Consumer(policy=policy, decode=VideoRequested.model_validate_json, handle=handle,
                        retry=RetryPacing(0.05, 0.1))
    runner = ConsumerRunner(connection, topology, [consumer])
    await runner.start()
    try:
        event = VideoRequested.new(video_id=uuid.uuid4(), org="acme", correlation_id="corr-1",
                                   prompt="p", model="sora-2", seconds="4", size="720x1280")
        original = topology.subject("video.requested", "acme")
        await publisher.publish(event)

        async def buried() -> bool:
            return len(await list_dead_letters(service_settings.nats_url, topology)) == 1

        await wait_until(buried, timeout_s=20)
        assert attempts == [1, 2, 3]  # exactly max_deliver attempts, no hot loop beyond it
        [stored] = await list_dead_letters(service_settings.nats_url, topology)
        assert stored.letter.video_id == event.video_id
        assert stored.letter.subject == original

        fail = False
        replayed = await replay_dead_letters(service_settings.nats_url, topology)
        assert replayed == [stored.sequence]
        await asyncio.wait_for(healed.wait(), 10)
        assert subjects == [original] * 4  # the replay went back to the organization's subject
        assert await list_dead_letters(service_settings.nats_url, topology) == []
    finally:
        await runner.stop()
        await connection.close()


async def test_cli_lists_and_replays(
    service_settings: ServiceSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reelvault_common.messaging.deadletter import (
        DeadLetter,
        ensure_dead_letter_stream,
        publish_dead_letter,
    )

    from reelvault.cli import main

    topology = Topology.from_settings(service_settings)
    await prepare_topology(service_settings, topology)
    nc = await nats.connect(service_settings.nats_url)
    try:
        js = nc.jetstream()
        await ensure_dead_letter_stream(js, topology)
        event = VideoRequested.new(
            video_id=uuid.uuid4(),
            org="acme",
            correlation_id="c",
            prompt="p",
            model="sora-2",
            seconds="4",
            size="720x1280",
        )
        await publish_dead_letter(
            js,
            topology,
            DeadLetter.of(
                consumer="c1",
                subject=topology.subject("video.requested", "acme"),
                stream_sequence=7,
                deliveries=5,
                payload=event.model_dump_json().encode(),
                headers={},
                error="boom",
                video_id=event.video_id,
            ),
        )
    finally:
        await nc.close()

    monkeypatch.setenv("NATS_URL", service_settings.nats_url)
    monkeypatch.setenv("REELVAULT_NAMESPACE", service_settings.namespace)

    def run(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        return int(exit_info.value.code or 0), capsys.readouterr().out

    code, out = await asyncio.to_thread(run, "dead-letters", "list")
    assert code == 0 and "1 dead letter(s)" in out and "boom" in out and str(event.video_id) in out
    code, _ = await asyncio.to_thread(run, "dead-letters", "replay")
    assert code == 2  # neither --seq nor --all
    code, out = await asyncio.to_thread(run, "dead-letters", "replay", "--all")
    assert code == 0 and out.startswith("replayed 1")
    code, out = await asyncio.to_thread(run, "dead-letters", "list")
    assert "0 dead letter(s)" in out
    nc = await nats.connect(service_settings.nats_url)
    try:
        replayed = await nc.jetstream().get_last_msg(
            topology.stream, topology.subject("video.requested", "acme")
        )
        assert parse_event(replayed.data) == event
    finally:
        await nc.close()


async def test_a_dead_letter_from_before_organizations_is_replayed_onto_the_new_subject(
    service_settings: ServiceSettings,
) -> None:
    """A letter stored under the old subject (``<namespace>.video.requested``) names a subject
    the stream no longer takes: it is replayed onto its organization's subject instead."""
    from reelvault_common.messaging.deadletter import DeadLetter, publish_dead_letter

    topology = Topology.from_settings(service_settings)
    await prepare_topology(service_settings, topology)
    event = VideoRequested.new(video_id=uuid.uuid4(), org="acme", correlation_id="c",
                               prompt="p", model="sora-2", seconds="4", size="720x1280")
    legacy = event.model_dump(mode="json")
    del legacy["org"]  # written before events carried it: the default organization's
    nc = await nats.connect(service_settings.nats_url)
    try:
        js = nc.jetstream()
        await publish_dead_letter(js, topology, DeadLetter.of(
            consumer="c1", subject=f"{topology.namespace}.video.requested", stream_sequence=3,
            deliveries=5, payload=json.dumps(legacy).encode(), headers={}, error="boom",
            video_id=event.video_id,
        ))
        [stored] = await list_dead_letters(service_settings.nats_url, topology)
        assert await replay_dead_letters(service_settings.nats_url, topology) == [stored.sequence]
        replayed = await js.get_last_msg(topology.stream, topology.subject("video.requested",
                                                                           "default"))
        decoded = parse_event(replayed.data)
        assert (decoded.event_id, decoded.org) == (event.event_id, "default")
        assert await list_dead_letters(service_settings.nats_url, topology) == []
    finally:
        await nc.close()
