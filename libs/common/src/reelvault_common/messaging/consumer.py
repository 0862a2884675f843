"""The one way every service consumes JetStream: a handler per durable consumer, one runner.

A handler gets the decoded, typed event and a ``Delivery`` (subject, attempt, headers). It
returns once its effect is durable, raises ``RetryLater``/``Reject``, or fails. The runner owns
everything else, the same for every consumer:

- pull: fetches only as many messages as it has free workers, so nothing sits fetched but
  unstarted (a stop then has nothing to hand back but the work in flight);
- decode: a payload that does not decode is terminated at once (it never will);
- settle: return -> ack; ``RetryLater`` -> nak with its delay; ``Reject`` -> term; any other
  exception -> nak with the consumer's ``RetryPacing``; on the ``max_deliver``-th delivery (or
  when ``give_up`` says so) a retry or failure is dead-lettered instead: copied with its last
  error to the dead-letter stream, handed to ``on_dead_letter`` (what it means for a video is
  the service's decision), then terminated;
- heartbeat: work longer than a third of ``ack_wait`` is kept alive with in-progress acks;
- stop: no new fetches; work in flight gets ``grace_s`` to finish, then is cancelled and its
  message handed back at once (nak) for another replica;
- context: each delivery runs in a consumer span continuing the trace in its headers
  (``process <type>``, when traces are exported), and its log lines name its video and org.

Plain nats-py pull subscriptions rather than FastStream subscribers: FastStream drops messages
its pull loop fetched but had not started when it stops (they come back only after
``ack_wait``), and tracking in-flight work or handing messages back needed its private
internals. Here everything is nats-py's public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from reelvault_common.messaging.deadletter import DeadLetter, publish_dead_letter
from reelvault_common.messaging.outcomes import Reject, RetryLater, RetryPacing
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime import telemetry
from reelvault_common.runtime.metrics import count_redelivery
from reelvault_common.runtime.settings import ConsumerSettings

log = logging.getLogger(__name__)

E = TypeVar("E")

# How long one pull waits for messages: also how long a stop may wait for the last pull.
FETCH_TIMEOUT_S = 1.0
# How long a failing dead-letter hook is retried before the message is terminated anyway.
DEAD_LETTER_HOOK_S = 30.0
# How long handing back or terminating a message may take at shutdown.
SETTLE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message, as its handler sees it."""

    subject: str
    attempt: int  # 1 for the first delivery
    stream_sequence: int
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, msg: Msg) -> Delivery:
        metadata = msg.metadata
        return cls(
            subject=msg.subject,
            attempt=int(metadata.num_delivered or 1),
            stream_sequence=int(metadata.sequence.stream) if metadata.sequence else 0,
            headers=dict(msg.headers or {}),
        )


Handler = Callable[[E, Delivery], Awaitable[None]]
DeadLetterHook = Callable[[E, DeadLetter], Awaitable[None]]


@dataclass(frozen=True)
class Consumer(Generic[E]):
    """One durable consumer: its policy, how to decode its payloads and what handles them.

    ``transient`` errors are expected hiccups (logged without a traceback); every failure is
    retried with ``retry`` until the last delivery. ``give_up`` ends retries early (e.g. a job
    past its deadline)."""

    policy: ConsumerPolicy
    decode: Callable[[bytes], E]
    handle: Handler[E]
    workers: int = 1
    retry: RetryPacing = field(default_factory=RetryPacing)
    transient: tuple[type[BaseException], ...] = ()
    on_dead_letter: DeadLetterHook[E] | None = None
    give_up: Callable[[E], bool] | None = None

    @classmethod
    def configured(
        cls,
        settings: ConsumerSettings,
        *,
        durable: str,
        subjects: tuple[str, ...],
        decode: Callable[[bytes], E],
        handle: Handler[E],
        transient: tuple[type[BaseException], ...] = (),
        on_dead_letter: DeadLetterHook[E] | None = None,
        give_up: Callable[[E], bool] | None = None,
    ) -> Consumer[E]:
        """A consumer whose policy, workers and retry pacing come from its settings."""
        return cls(
            policy=ConsumerPolicy.of(durable, subjects, settings),
            decode=decode,
            handle=handle,
            workers=settings.workers,
            retry=RetryPacing.of(settings),
            transient=transient,
            on_dead_letter=on_dead_letter,
            give_up=give_up,
        )

    @property
    def name(self) -> str:
        return self.policy.durable


class ConsumerRunner:
    """Runs a service's consumers on one NATS connection: ``start()``, then ``stop()``."""

    def __init__(
        self,
        connection: NatsClient,
        topology: Topology,
        consumers: list[Consumer[Any]],
        *,
        grace_s: float = 10.0,
    ) -> None:
        self._js: JetStreamContext = connection.jetstream()
        self._topology = topology
        self._consumers = consumers
        self._grace_s = grace_s
        self._stopping = asyncio.Event()
        self._pulls: list[asyncio.Task[None]] = []
        self._heartbeats: list[asyncio.Task[None]] = []
        self._in_flight: dict[asyncio.Task[None], tuple[Msg, float]] = {}
        self._fetching: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        """Messages being handled right now."""
        return len(self._in_flight)

    async def start(self) -> None:
        for consumer in self._consumers:
            subscription = await self._js.pull_subscribe_bind(
                durable=consumer.policy.durable, stream=self._topology.stream
            )
            self._pulls.append(asyncio.create_task(
                self._pull(consumer, subscription), name=f"consume-{consumer.name}"))
            self._heartbeats.append(asyncio.create_task(
                self._heartbeat(consumer), name=f"heartbeat-{consumer.name}"))

    async def stop(self) -> None:
        """No new messages; work in flight gets ``grace_s``, then hands its message back."""
        self._stopping.set()
        # A pull loop waiting for a free worker stops at once; one in a fetch ends when the
        # fetch returns (at most FETCH_TIMEOUT_S): a fetch cut short could leave messages
        # delivered to nobody until their ack_wait.
        for task in self._pulls:
            if task not in self._fetching:
                task.cancel()
        await asyncio.gather(*self._pulls, return_exceptions=True)
        self._pulls.clear()
        working = list(self._in_flight)
        if working:
            _, pending = await asyncio.wait(working, timeout=self._grace_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("handing back %d message(s) still in work after %.0fs",
                            len(pending), self._grace_s)
                await asyncio.wait(pending, timeout=SETTLE_TIMEOUT_S + 1)
        for task in self._heartbeats:
            task.cancel()
        await asyncio.gather(*self._heartbeats, return_exceptions=True)
        self._heartbeats.clear()

    # --- pulling --------------------------------------------------------------------------
    async def _pull(self, consumer: Consumer[Any], subscription: Any) -> None:
        free = asyncio.Semaphore(consumer.workers)
        try:
            while not self._stopping.is_set():
                slots = await self._free_workers(free, consumer.workers)
                messages = await self._fetch(consumer, subscription, slots)
                for msg in messages:
                    task = asyncio.create_task(self._run(consumer, msg), name=consumer.name)
                    self._in_flight[task] = (msg, asyncio.get_running_loop().time())
                    task.add_done_callback(self._finished(free))
                for _ in range(slots - len(messages)):
                    free.release()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    @staticmethod
    async def _free_workers(free: asyncio.Semaphore, workers: int) -> int:
        """Wait for one free worker, then take every other one free right now."""
        await free.acquire()
        slots = 1
        while slots < workers and not free.locked():
            await free.acquire()
            slots += 1
        return slots

    async def _fetch(self, consumer: Consumer[Any], subscription: Any, slots: int) -> list[Msg]:
        if self._stopping.is_set():
            return []
        task = asyncio.current_task()
        assert task is not None
        self._fetching.add(task)
        try:
            return list(await subscription.fetch(batch=slots, timeout=FETCH_TIMEOUT_S))
        except nats.errors.TimeoutError:
            return []  # idle: nothing to do, not an error
        except Exception as exc:  # connection trouble: nats-py reconnects, we try again
            if not self._stopping.is_set():
                log.warning("%s: fetch failed: %r", consumer.name, exc)
                await asyncio.sleep(FETCH_TIMEOUT_S)
            return []
        finally:
            self._fetching.discard(task)

    def _finished(self, free: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._in_flight.pop(task, None)
            free.release()
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("consumer task failed: %r", exc)

        return done

    async def _heartbeat(self, consumer: Consumer[Any]) -> None:
        every = max(consumer.policy.ack_wait_s / 3, 0.5)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for task, (msg, started) in list(self._in_flight.items()):
                # Half a period of age: a beat reaches every message within two thirds of
                # its ack_wait, wherever in the period it started.
                if task.get_name() == consumer.name and now - started >= every / 2:
                    with contextlib.suppress(Exception):  # a missed beat risks a redelivery
                        await msg.in_progress()

    # --- one message ----------------------------------------------------------------------
    async def _run(self, consumer: Consumer[Any], msg: Msg) -> None:
        try:
            with telemetry.consuming(consumer.name, msg.subject, msg.headers):
                await self._settle(consumer, msg)
        except asyncio.CancelledError:
            log.warning("%s: handing back %s, stopped before it was done", consumer.name,
                        msg.subject)
            await _shielded(msg.nak())
            raise

    async def _settle(self, consumer: Consumer[Any], msg: Msg) -> None:
        delivery = Delivery.of(msg)
        count_redelivery(consumer.name, delivery.attempt)
        try:
            event = consumer.decode(msg.data)
        except Exception as exc:
            log.error("%s: terminating an undecodable message on %s (%d bytes, delivery %d): "
                      "%s", consumer.name, msg.subject, len(msg.data), delivery.attempt,
                      _summary(exc))
            telemetry.failed(f"undecodable: {_summary(exc)}")
            await msg.term()
            return
        telemetry.delivered(event, delivery.attempt)
        try:
            await consumer.handle(event, delivery)
        except RetryLater as retry:
            await self._retry(consumer, msg, event, delivery, retry.delay,
                              f"still retrying: {retry}")
            return
        except Reject as reject:
            log.error("%s: terminating %s: %s", consumer.name, msg.subject, reject)
            telemetry.failed(reject)
            await msg.term()
            return
        except Exception as exc:
            expected = isinstance(exc, consumer.transient)
            log.log(logging.WARNING if expected else logging.ERROR,
                    "%s: %s failed on delivery %d: %r", consumer.name, msg.subject,
                    delivery.attempt, exc, exc_info=not expected)
            telemetry.failed(exc)
            await self._retry(consumer, msg, event, delivery, consumer.retry.delay(
                delivery.attempt), f"{type(exc).__name__}: {exc}")
            return
        await msg.ack()

    async def _retry(self, consumer: Consumer[Any], msg: Msg, event: Any, delivery: Delivery,
                     delay: float, why: str) -> None:
        limit = consumer.policy.max_deliver
        last = limit > 0 and delivery.attempt >= limit
        if last or (consumer.give_up is not None and consumer.give_up(event)):
            await self._dead_letter(consumer, msg, event, delivery, why)
            return
        log.debug("%s: %s again in %.1fs: %s", consumer.name, msg.subject, delay, why)
        await msg.nak(delay=delay)

    async def _dead_letter(self, consumer: Consumer[Any], msg: Msg, event: Any,
                           delivery: Delivery, why: str) -> None:
        letter = DeadLetter.of(
            consumer=consumer.name, subject=msg.subject,
            stream_sequence=delivery.stream_sequence, deliveries=delivery.attempt,
            payload=msg.data, headers=dict(delivery.headers), error=why,
            video_id=getattr(event, "video_id", None),
        )
        # Published before the term: a crash in between brings the message back, and the
        # dead letter's own Nats-Msg-Id drops the second copy.
        await publish_dead_letter(self._js, self._topology, letter)
        if consumer.on_dead_letter is not None:
            await self._tell_service(consumer, event, letter)
        log.error("%s: dead-lettered %s seq %d after %d deliveries: %s", consumer.name,
                  msg.subject, delivery.stream_sequence, delivery.attempt, why)
        await msg.term()


    @staticmethod
    async def _tell_service(consumer: Consumer[Any], event: Any, letter: DeadLetter) -> None:
        """Run the dead-letter hook, retrying it for a while: this was the message's last
        delivery, so a hook that fails now would never run again (the dead letter itself is
        stored, and a replay re-drives the message)."""
        assert consumer.on_dead_letter is not None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(DEAD_LETTER_HOOK_S),
                wait=wait_exponential(multiplier=0.2, max=5.0),
                retry=retry_if_exception_type(Exception),
                reraise=True,
            ):
                with attempt:
                    await consumer.on_dead_letter(event, letter)
        except Exception as exc:
            log.error("%s: the dead letter of seq %d is stored, but its hook kept failing: %r",
                      consumer.name, letter.stream_sequence, exc)


async def _shielded(action: Awaitable[None]) -> None:
    """Finish ``action`` even from a cancelled task (bounded); a failure only means the message
    comes back after its ack_wait instead of at once."""
    task = asyncio.ensure_future(action)
    try:
        await asyncio.wait_for(asyncio.shield(task), SETTLE_TIMEOUT_S)
    except (asyncio.CancelledError, Exception) as exc:
        log.debug("could not settle a message at shutdown: %r", exc)


def _summary(exc: BaseException) -> str:
    """Why a payload was refused, without echoing the payload."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            parts = [
                f"{'.'.join(str(p) for p in e.get('loc', ())) or 'payload'}: {e.get('msg')}"
                for e in errors(include_input=False, include_url=False)[:3]
            ]
            return "; ".join(parts)
    return type(exc).__name__
