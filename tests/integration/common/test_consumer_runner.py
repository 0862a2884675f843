"""The one consumer runner on a real JetStream: what each handler outcome does to the message,
dead letters, heartbeats, the worker bound and the graceful stop."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from reelvault_common.contracts.events import VideoFailed, VideoRequested, parse_event
from reelvault_common.messaging.consumer import Consumer, ConsumerRunner, Delivery
from reelvault_common.messaging.deadletter import DeadLetter, list_dead_letters
from reelvault_common.messaging.outcomes import Reject, RetryLater, RetryPacing
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration

Handle = Callable[[VideoRequested, Delivery], Awaitable[None]]


def requested(org: str = "acme") -> VideoRequested:
    return VideoRequested.new(video_id=uuid.uuid4(), org=org, correlation_id="corr", prompt="p",
                              model="sora-2", seconds="4", size="720x1280")


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Rig:
    """A topology, a connection, a publisher and runners built on demand (all stopped at the
    end)."""

    def __init__(self, settings: ServiceSettings, connection: NatsClient) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.connection = connection
        self.publisher = EventPublisher(connection, self.topology)
        self.runners: list[ConsumerRunner] = []

    def policy(self, **rules: Any) -> ConsumerPolicy:
        return ConsumerPolicy(self.topology.durable("test", "work"),
                              (self.topology.subject_for(VideoRequested),), **rules)

    async def run(self, handle: Handle, *, policy: ConsumerPolicy | None = None,
                  grace_s: float = 5.0, **options: Any) -> ConsumerRunner:
        policy = policy or self.policy()
        await prepare_topology(self.settings, self.topology, [policy])
        consumer = Consumer(policy=policy, decode=VideoRequested.model_validate_json,
                            handle=handle, retry=RetryPacing(0.05, 0.1), **options)
        runner = ConsumerRunner(self.connection, self.topology, [consumer], grace_s=grace_s)
        await runner.start()
        self.runners.append(runner)
        return runner

    async def settled(self, durable: str, timeout_s: float = 5.0) -> None:
        """Nothing left to deliver and nothing unacknowledged (acks are asynchronous)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (state := await self.pending(durable)) != (0, 0):
            assert asyncio.get_running_loop().time() < deadline, f"still pending: {state}"
            await asyncio.sleep(0.05)

    async def pending(self, durable: str) -> tuple[int, int]:
        """(not yet delivered, delivered but unacknowledged)."""
        info = await self.connection.jetstream().consumer_info(self.topology.stream, durable)
        return info.num_pending or 0, info.num_ack_pending or 0


@pytest.fixture
async def rig(service_settings: ServiceSettings) -> AsyncIterator[Rig]:
    connection = await nats.connect(service_settings.nats_url)
    rig = Rig(service_settings, connection)
    try:
        yield rig
    finally:
        for runner in rig.runners:
            await runner.stop()
        await connection.close()


async def test_a_returning_handler_acks_once(rig: Rig) -> None:
    seen: list[tuple[uuid.UUID, int, str]] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        seen.append((event.video_id, delivery.attempt, delivery.headers["correlation_id"]))

    await rig.run(handle)
    event = requested()
    await rig.publisher.publish(event)
    await eventually(lambda: len(seen) == 1)
    await asyncio.sleep(0.3)
    assert seen == [(event.video_id, 1, "corr")]
    await rig.settled(rig.policy().durable)


async def test_one_consumer_takes_every_organizations_events_on_their_subjects(
    rig: Rig,
) -> None:
    seen: dict[uuid.UUID, tuple[str, str]] = {}

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        seen[event.video_id] = (event.org, delivery.subject)

    await rig.run(handle)
    events = [requested("acme"), requested("globex"), requested("default")]
    for event in events:
        await rig.publisher.publish(event)
    await eventually(lambda: len(seen) == len(events))
    assert seen == {
        event.video_id: (event.org, rig.topology.subject("video.requested", event.org))
        for event in events
    }
    await rig.settled(rig.policy().durable)


async def test_retry_later_redelivers_after_its_delay(rig: Rig) -> None:
    times: list[float] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        times.append(asyncio.get_running_loop().time())
        if delivery.attempt < 3:
            raise RetryLater(0.4, "not yet")

    await rig.run(handle)
    await rig.publisher.publish(requested())
    await eventually(lambda: len(times) == 3)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.35 for gap in gaps), gaps  # the delay is honoured, no hot loop


async def test_reject_and_undecodable_payloads_are_terminated(rig: Rig) -> None:
    calls: list[int] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        calls.append(delivery.attempt)
        raise Reject("never")

    policy = rig.policy(ack_wait_s=1, max_deliver=5)
    await rig.run(handle, policy=policy)
    await rig.publisher.publish(requested())
    js = rig.connection.jetstream()
    await js.publish(rig.topology.subject("video.requested", "acme"), b"{not json",
                     stream=rig.topology.stream)
    await eventually(lambda: len(calls) == 1)
    await asyncio.sleep(1.5)  # past ack_wait: a message not terminated would come back
    assert calls == [1]
    await rig.settled(policy.durable)
    assert await list_dead_letters(rig.settings.nats_url, rig.topology) == []


async def test_a_failure_is_retried_then_dead_lettered_with_the_service_hook(rig: Rig) -> None:
    attempts: list[int] = []
    hooked: list[DeadLetter] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise ValueError("cannot digest this")

    async def on_dead_letter(event: VideoRequested, letter: DeadLetter) -> None:
        hooked.append(letter)
        failure = VideoFailed.dead_lettered(event, stage="generation", consumer=letter.consumer,
                                            deliveries=letter.deliveries, error=letter.error)
        assert failure is not None
        await rig.publisher.publish(failure)

    policy = rig.policy(max_deliver=3)
    await rig.run(handle, policy=policy, on_dead_letter=on_dead_letter)
    event = requested()
    await rig.publisher.publish(event)
    await eventually(lambda: len(hooked) == 1)
    await asyncio.sleep(0.3)
    assert attempts == [1, 2, 3]  # exactly max_deliver deliveries
    [stored] = await list_dead_letters(rig.settings.nats_url, rig.topology)
    assert (stored.letter.consumer, stored.letter.deliveries) == (policy.durable, 3)
    assert "ValueError: cannot digest this" in stored.letter.error
    assert parse_event(stored.letter.payload) == event
    assert stored.letter.subject == rig.topology.subject("video.requested", event.org)
    failed = parse_event((await rig.connection.jetstream().get_last_msg(
        rig.topology.stream, rig.topology.subject("video.failed", event.org))).data)
    assert isinstance(failed, VideoFailed)
    assert (failed.video_id, failed.code, failed.stage, failed.org) == (
        event.video_id, "dead_lettered", "generation", event.org)
    await rig.settled(policy.durable)


async def test_give_up_dead_letters_before_max_deliver(rig: Rig) -> None:
    attempts: list[int] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RetryLater(0.05, "the job is not done")

    await rig.run(handle, policy=rig.policy(max_deliver=50), give_up=lambda event: True)
    await rig.publisher.publish(requested())
    await eventually(lambda: len(attempts) == 1)
    await asyncio.sleep(0.5)
    assert attempts == [1]
    [stored] = await list_dead_letters(rig.settings.nats_url, rig.topology)
    assert "still retrying: the job is not done" in stored.letter.error


async def test_heartbeats_keep_work_longer_than_ack_wait_from_being_redelivered(
    rig: Rig,
) -> None:
    deliveries: list[int] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        deliveries.append(delivery.attempt)
        await asyncio.sleep(3.5)  # more than three ack_waits

    policy = rig.policy(ack_wait_s=1)
    await rig.run(handle, policy=policy, workers=2)
    await rig.publisher.publish(requested())
    await eventually(lambda: len(deliveries) == 1)
    await asyncio.sleep(4.0)
    assert deliveries == [1]
    await rig.settled(policy.durable)


async def test_workers_bound_the_messages_in_flight(rig: Rig) -> None:
    running = 0
    most = 0
    done = 0

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        done += 1

    await rig.run(handle, workers=3)
    for _ in range(12):
        await rig.publisher.publish(requested())
    await eventually(lambda: done == 12)
    assert most == 3


async def test_stop_hands_unfinished_work_back_at_once(rig: Rig) -> None:
    started = asyncio.Event()
    second: list[int] = []

    async def stuck(event: VideoRequested, delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(60)

    async def finish(event: VideoRequested, delivery: Delivery) -> None:
        second.append(delivery.attempt)

    policy = rig.policy(ack_wait_s=30)
    first = await rig.run(stuck, policy=policy, grace_s=0.3)
    await rig.publisher.publish(requested())
    await asyncio.wait_for(started.wait(), 10)
    await first.stop()
    assert first.in_flight == 0
    # Handed back with a nak: the next runner gets it long before ack_wait (30 s).
    await rig.run(finish, policy=policy)
    await eventually(lambda: second == [2], timeout_s=5)


async def test_stop_lets_work_in_flight_finish_within_the_grace(rig: Rig) -> None:
    started = asyncio.Event()
    finished: list[int] = []

    async def slow(event: VideoRequested, delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(delivery.attempt)

    policy = rig.policy()
    runner = await rig.run(slow, policy=policy, grace_s=5)
    await rig.publisher.publish(requested())
    await asyncio.wait_for(started.wait(), 10)
    await runner.stop()
    assert finished == [1]
    await rig.settled(policy.durable)


async def test_a_failing_dead_letter_hook_is_retried_before_the_message_ends(rig: Rig) -> None:
    calls: list[int] = []

    async def handle(event: VideoRequested, delivery: Delivery) -> None:
        raise ValueError("broken")

    async def flaky_hook(event: VideoRequested, letter: DeadLetter) -> None:
        calls.append(letter.deliveries)
        if len(calls) < 3:
            raise ConnectionError("the stream did not answer")

    policy = rig.policy(max_deliver=2)
    await rig.run(handle, policy=policy, on_dead_letter=flaky_hook)
    await rig.publisher.publish(requested())
    await eventually(lambda: len(calls) == 3)
    await asyncio.sleep(0.3)
    assert calls == [2, 2, 2]  # the last delivery's hook, until it succeeded
    await rig.settled(policy.durable)
    assert len(await list_dead_letters(rig.settings.nats_url, rig.topology)) == 1
