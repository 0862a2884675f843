"""The gateway's link to NATS: connects in the background (the HTTP server starts even while
the broker is down, answering 503 and reporting not-ready), prepares the stream, publishes
lifecycle events and carries the catalog's request/reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import nats
import nats.errors
from faststream.exceptions import IncorrectState
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, PubAck, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from reelvault_common.contracts.events import VideoEvent
from reelvault_common.contracts.flags import Flags
from reelvault_common.messaging.broker import make_broker
from reelvault_common.messaging.flags import FlagWatch, open_flags_bucket
from reelvault_common.messaging.model_catalog import ModelCatalogWatch, open_models_bucket
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import prepare_topology, wait_for_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.models import DEFAULT_CATALOG, ModelCatalog
from reelvault_common.runtime.nats_servers import redact_url
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_common.runtime.startup import Backoff, Startup, StartupTimeout
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from reelvault_gateway.visibility import RecordedWatch

log = logging.getLogger(__name__)

# What a publish or request can fail with when the broker is away or slow.
TRANSIENT_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    asyncio.TimeoutError,
    IncorrectState,
    ConnectionError,
)

# Between attempts at the set-up once NATS answered: 0.5s doubling up to 10s, each wait drawn
# from the upper half of that so replicas do not retry in lockstep; no deadline.
SETUP_BACKOFF = Backoff(base_s=0.5, cap_s=10.0, jitter=0.5)


class BrokerUnavailable(Exception):
    """The broker did not take the message (down, reconnecting, or no ack in time)."""


class EventSink(Protocol):
    async def publish(self, event: VideoEvent) -> PubAck: ...


class Requester(Protocol):
    async def request(self, subject: str, payload: bytes, timeout_s: float) -> bytes: ...


class LiveFlags:
    """The runtime flags as the watch last saw them; the defaults until it runs."""

    def __init__(self) -> None:
        self.watch: FlagWatch | None = None

    @property
    def current(self) -> Flags:
        return self.watch.current if self.watch is not None else Flags()


class LiveModels:
    """The deployment's model catalog as the generator last published it; ``fallback`` until
    then (a gateway started before any generator, or without a broker yet)."""

    def __init__(self, fallback: ModelCatalog) -> None:
        self.fallback = fallback
        self.watch: ModelCatalogWatch | None = None

    @property
    def current(self) -> ModelCatalog:
        return self.watch.current if self.watch is not None else self.fallback

    @property
    def published(self) -> bool:
        return self.watch is not None and self.watch.published


class BrokerLink:
    """Owns the FastStream broker; ``start`` returns once connected or after ``wait_s``.

    Until NATS answers it retries in the background (one log line per attempt); after
    ``startup_timeout_s`` without it, it gives up: ``on_give_up`` gets the reason (the process
    then exits non-zero), else it stays not-ready."""

    def __init__(
        self,
        settings: ServiceSettings,
        topology: Topology,
        publish_timeout_s: float,
        idempotency_ttl_s: float | None = None,
        on_give_up: Callable[[str], None] | None = None,
        fallback_models: ModelCatalog = DEFAULT_CATALOG,
    ) -> None:
        self._settings = settings
        self._topology = topology
        self._on_give_up = on_give_up
        # The Idempotency-Key records (None: no bucket, keys are refused with 503).
        self._idempotency_ttl_s = idempotency_ttl_s
        self._idempotency: KeyValue | None = None
        # Announcements of new catalog rows (creates wait for them instead of polling).
        self.recorded = RecordedWatch()
        # Other core-NATS subjects to follow (subject -> handler of a message's data).
        self._listeners: dict[str, Callable[[bytes], None]] = {}
        # The runtime flags (maintenance, whitelist, coming soon), watched once connected.
        self.flags = LiveFlags()
        # What can be generated, watched once connected.
        self.models = LiveModels(fallback_models)
        # No buffering while reconnecting: a publish we reported as failed must never be sent.
        self._broker: NatsBroker = make_broker(
            settings, "reelvault-gateway", buffer_while_reconnecting=False
        )
        self._publisher: EventPublisher | None = None  # once connected
        self._publisher_timeout_s = publish_timeout_s
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def listen(self, subject: str, handler: Callable[[bytes], None]) -> None:
        """Follow ``subject`` once connected (register before ``start``)."""
        self._listeners[subject] = handler

    async def start(self, wait_s: float, abort: asyncio.Event | None = None) -> None:
        """Connect in the background; wait until connected, until the connection gives up,
        ``abort`` is set (shutting down) or ``wait_s`` passed, whichever comes first."""
        self._task = asyncio.create_task(self._connect(), name="gateway-broker-connect")
        waits = [asyncio.create_task(self._ready.wait())]
        if abort is not None:
            waits.append(asyncio.create_task(abort.wait()))
        try:
            await asyncio.wait({self._task, *waits}, timeout=wait_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if not self._ready.is_set() and not self._task.done():
            log.warning(
                "broker at %s not reachable yet; serving 503s until it is",
                self._settings.nats_url_for_logs,
            )

    async def _connect(self) -> None:
        where = self._settings.nats_url_for_logs
        prepared = False
        try:
            # The stream first, over short-lived connections: retried while NATS is not up.
            await wait_for_nats(Startup.from_settings(self._settings), self._settings,
                                self._topology)
            prepared = True
        except StartupTimeout as exc:
            if self._on_give_up is not None:
                self._on_give_up(str(exc))  # logged by whoever ends the process
            else:
                log.error("%s; staying not ready", exc)
            return
        except Exception as exc:
            # NATS answered but refused the set-up: _finish_setup keeps trying and says why.
            log.warning("preparing the stream at %s failed: %s", where, redact_url(repr(exc)))
        try:
            await self._broker.start()  # NATS answered: the broker connects (or keeps trying)
            self._publisher = EventPublisher(self._broker.connection, self._topology,
                                             timeout_s=self._publisher_timeout_s)
        except Exception as exc:
            # Only unrecoverable errors end up here (e.g. authorization): stay not-ready.
            log.error("cannot connect to the broker at %s: %s", where, redact_url(repr(exc)))
            return
        await self._finish_setup(prepared)
        self._ready.set()
        log.info("broker connected, stream %s ready", self._topology.stream)

    async def _finish_setup(self, prepared: bool) -> None:
        """The stream (unless prepared already), the idempotency bucket, the flags and the
        catalog's announcements, retried with backoff until all are there (or the task is
        cancelled). Done before the link counts as connected, so no write is taken before the
        flags are known."""
        async for attempt in AsyncRetrying(
            wait=SETUP_BACKOFF.wait(),
            # Errors only: a cancellation (shutting down) ends the wait at once.
            retry=retry_if_exception_type(Exception),
            before_sleep=_log_setup_retry,
        ):
            with attempt:
                if not prepared:
                    await prepare_topology(self._settings, self._topology)
                    prepared = True
                if self._idempotency_ttl_s is not None:
                    self._idempotency = await self._open_idempotency_bucket()
                if self.flags.watch is None:
                    self.flags.watch = await self._watch_flags()
                if self.models.watch is None:
                    self.models.watch = await self._watch_models()
                await self._follow_subjects()

    async def _open_idempotency_bucket(self) -> KeyValue:
        client = self._client()
        if client is None:
            raise BrokerUnavailable("the message broker is not connected")
        js = client.jetstream(timeout=self._publisher_timeout_s)
        bucket = self._topology.idempotency_bucket
        try:
            return await js.key_value(bucket)
        except (BucketNotFoundError, NotFoundError):
            pass
        assert self._idempotency_ttl_s is not None
        # Records expire ttl after their last write (the bucket stream's max_age).
        return await js.create_key_value(KeyValueConfig(
            bucket=bucket, history=1, ttl=self._idempotency_ttl_s, storage=StorageType.FILE,
            replicas=self._settings.stream_replicas))

    async def _watch_flags(self) -> FlagWatch:
        client = self._client()
        if client is None:
            raise BrokerUnavailable("the message broker is not connected")
        bucket = await open_flags_bucket(client, self._topology, self._publisher_timeout_s)
        watch = FlagWatch(bucket)
        await watch.start(wait_s=self._publisher_timeout_s)
        return watch

    async def _watch_models(self) -> ModelCatalogWatch:
        client = self._client()
        if client is None:
            raise BrokerUnavailable("the message broker is not connected")
        watch = ModelCatalogWatch(await open_models_bucket(client, self._topology),
                                  self.models.fallback)
        await watch.start(wait_s=self._publisher_timeout_s)
        return watch

    async def _follow_subjects(self) -> None:
        client = self._client()
        if client is None:
            raise BrokerUnavailable("the message broker is not connected")
        handlers = {self._topology.catalog_recorded: self.recorded.on_message,
                    **self._listeners}
        for subject, handler in handlers.items():
            # Core subscriptions: nats-py renews them after every reconnect by itself.
            await client.subscribe(subject, cb=_deliver_to(handler))

    def idempotency_bucket(self) -> KeyValue:
        """The KV bucket of Idempotency-Key records; ``BrokerUnavailable`` until connected."""
        if self._idempotency is None or not self.connected:
            raise BrokerUnavailable("the message broker is not connected")
        return self._idempotency

    def _client(self) -> Client | None:
        try:
            return self._broker.connection
        except IncorrectState:
            return None

    @property
    def connected(self) -> bool:
        client = self._client()
        return self._ready.is_set() and client is not None and client.is_connected

    async def publish(self, event: VideoEvent) -> PubAck:
        """Publish to JetStream and wait for the ack; ``BrokerUnavailable`` if it was not taken."""
        if not self.connected or self._publisher is None:
            raise BrokerUnavailable("the message broker is not connected")
        try:
            return await self._publisher.publish(event)
        except TRANSIENT_BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"the message broker did not acknowledge: {exc!r}") from exc

    async def request(self, subject: str, payload: bytes, timeout_s: float) -> bytes:
        """Core-NATS request/reply; ``BrokerUnavailable`` on no connection, no responder or
        timeout (the caller decides what that means for it)."""
        client = self._client()
        if client is None or not client.is_connected:
            raise BrokerUnavailable("the message broker is not connected")
        try:
            reply: Msg = await client.request(subject, payload, timeout=timeout_s)
        except TRANSIENT_BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"no reply on {subject}: {exc!r}") from exc
        return reply.data

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.flags.watch is not None:
            await self.flags.watch.stop()
        if self.models.watch is not None:
            await self.models.watch.stop()
        try:
            await self._broker.stop()
        except Exception as exc:  # closing a dead connection must not fail the shutdown
            log.warning("closing the broker connection failed: %r", exc)


def _deliver_to(handler: Callable[[bytes], None]) -> Callable[[Msg], Awaitable[None]]:
    async def on_message(msg: Msg) -> None:
        handler(msg.data)

    return on_message


def _log_setup_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("preparing the stream failed (%r); retrying in %.1fs", error, delay)
