"""Names of everything on the broker, derived from one namespace, and their reconciliation.

One stream holds the whole video lifecycle. Each consumer is a durable pull consumer named
after its service and purpose, so replicas share work and a restart resumes where it stopped.
nats-py does not update an existing durable by itself, so ``ensure_consumer`` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Self

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from reelvault_common.contracts.catalog import RPC_OF
from reelvault_common.contracts.events import EVENT_TYPES, ORG_EVENT_TYPES, event_type_name
from reelvault_common.runtime.settings import ConsumerSettings, ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerPolicy:
    """Delivery rules of one durable consumer."""

    durable: str
    filter_subjects: tuple[str, ...]
    ack_wait_s: float = 60.0
    # -1: unlimited (the generator's poll consumer re-delivers until a deadline it checks itself).
    max_deliver: int = 20
    # Waits before later redeliveries after an ack timeout (a crashed or stuck handler). The
    # server takes backoff[0] as ack_wait, so ack_wait leads the list. Off by default: with a
    # backoff list nats-server stretches nak(delay) retries to the backoff schedule, and every
    # handler here schedules its own retries with nak delays.
    backoff_s: tuple[float, ...] = ()
    max_ack_pending: int = 1000

    @classmethod
    def of(cls, durable: str, subjects: tuple[str, ...], settings: ConsumerSettings) -> Self:
        """The policy a consumer's settings describe (no server-side backoff: every retry here
        carries its own nak delay, which a backoff list would override)."""
        return cls(
            durable=durable,
            filter_subjects=subjects,
            ack_wait_s=settings.ack_wait_s,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
        )

    def to_config(self) -> ConsumerConfig:
        backoff: list[float] | None = None
        if self.backoff_s:
            backoff = [self.ack_wait_s, *self.backoff_s]
            # nats-server 2.9 refuses a backoff list with unlimited deliveries, and the server
            # requires max_deliver > len(backoff).
            unlimited = self.max_deliver == -1
            backoff = None if unlimited else backoff[: max(self.max_deliver - 1, 0)]
            if backoff is not None and len(backoff) < 2:
                backoff = None
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            backoff=backoff,
            max_ack_pending=self.max_ack_pending,
            filter_subject=self.filter_subjects[0] if len(self.filter_subjects) == 1 else None,
            filter_subjects=list(self.filter_subjects) if len(self.filter_subjects) > 1 else None,
        )


@dataclass(frozen=True)
class Topology:
    namespace: str
    stream_replicas: int = 1
    stream_max_age_s: float = 30 * 86400
    duplicate_window_s: float = 600
    _subjects: dict[str, str] = field(default_factory=dict, init=False, compare=False)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Topology:
        return cls(
            namespace=settings.namespace,
            stream_replicas=settings.stream_replicas,
            stream_max_age_s=settings.stream_max_age_days * 86400,
            duplicate_window_s=settings.stream_duplicate_window_s,
        )

    # --- the lifecycle stream -------------------------------------------------------------
    # Subjects carry the organization: ``<namespace>.events.<org>.<event type>``, so NATS
    # permissions on ``<namespace>.events.<org>.>`` grant exactly one organization's events.
    @property
    def stream(self) -> str:
        return self.namespace.upper().replace("-", "_") + "_VIDEOS"

    def subject(self, event_type: str, org: str) -> str:
        """``("video.completed", "acme")`` -> ``<namespace>.events.acme.video.completed``."""
        return f"{self.namespace}.events.{org}.{event_type}"

    def subject_filter(self, event_type: str) -> str:
        """Every organization's events of one type (what the services consume)."""
        return self.subject(event_type, "*")

    def subject_for(self, event_cls: type) -> str:
        """The filter for ``event_cls`` in every organization."""
        return self.subject_filter(event_type_name(event_cls))

    def org_events(self, org: str) -> str:
        """Everything one organization may be granted: its events, nothing else."""
        return f"{self.namespace}.events.{org}.>"

    @property
    def video_events(self) -> str:
        """Every organization's video events, without the organization events
        (``org.quota.*``): what a consumer that decodes only video events filters on."""
        return self.subject_filter("video.>")

    @property
    def stream_subjects(self) -> list[str]:
        videos = [self.subject_for(cls) for cls in EVENT_TYPES]
        return videos + [self.subject_for(cls) for cls in ORG_EVENT_TYPES]

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.stream,
            subjects=self.stream_subjects,
            retention=RetentionPolicy.LIMITS,
            max_age=self.stream_max_age_s,
            duplicate_window=self.duplicate_window_s,
            storage=StorageType.FILE,
            num_replicas=self.stream_replicas,
            discard=DiscardPolicy.OLD,
        )

    @property
    def dead_letter_stream(self) -> str:
        return self.namespace.upper().replace("-", "_") + "_DEAD_LETTERS"

    @property
    def dead_letter_subject(self) -> str:
        return f"{self.namespace}.deadletter"

    def durable(self, service: str, purpose: str) -> str:
        return f"{self.namespace}-{service}-{purpose}"

    # --- catalog request/reply ------------------------------------------------------------
    def rpc(self, name: str) -> str:
        """The catalog's request/reply subject for ``name`` (``get``, ``keys.lookup``, ...)."""
        return f"{self.namespace}.catalog.{name}"

    def rpc_subject(self, request: BaseModel) -> str:
        """Where the catalog answers ``request`` (one subject per request type)."""
        return self.rpc(RPC_OF[type(request)])

    @property
    def rpc_get(self) -> str:
        return self.rpc("get")

    @property
    def rpc_list(self) -> str:
        return self.rpc("list")

    @property
    def rpc_stats(self) -> str:
        return self.rpc("stats")

    @property
    def rpc_ping(self) -> str:
        return self.rpc("ping")

    @property
    def rpc_queue(self) -> str:
        return f"{self.namespace}-catalog"

    @property
    def catalog_recorded(self) -> str:
        """Core NATS (no stream, at most once): the catalog says "video <id> has its row now"
        right after the commit, so the gateway need not poll for it."""
        return f"{self.namespace}.catalog.recorded"

    @property
    def key_changes(self) -> str:
        """Core NATS: the catalog names (by public id) each API key it revoked or changed,
        after the commit, so every gateway drops it from its cache at once."""
        return f"{self.namespace}.auth.keys.changed"

    # --- key/value buckets ----------------------------------------------------------------
    def kv_bucket(self, service: str, purpose: str) -> str:
        return f"{self.namespace}_{service}_{purpose}".replace("-", "_")

    @property
    def idempotency_bucket(self) -> str:
        """The gateway's ``Idempotency-Key`` records (owned by the gateway)."""
        return self.kv_bucket("gateway", "idempotency")

    @property
    def flags_bucket(self) -> str:
        """Runtime flags (maintenance, whitelist, coming soon), read by every gateway."""
        return f"{self.namespace}_flags".replace("-", "_")

    @property
    def models_bucket(self) -> str:
        """The deployment's model catalog (written by the generator, read by every gateway)."""
        return f"{self.namespace}_models".replace("-", "_")

    @property
    def ops_bucket(self) -> str:
        """Operations state (e.g. ``backup.last_success``: the unix time of the last
        successful backup), written by operator commands, read by the catalog's metrics."""
        return self.kv_bucket("ops", "state")


async def ensure_stream(js: JetStreamContext, topology: Topology) -> None:
    """Create the lifecycle stream, or bring an existing one in line with the topology.

    A stream made before subjects carried the organization (``<namespace>.video.requested``,
    ...) gets the current subject list. The server keeps the messages stored under the old
    subjects until ``max_age`` removes them, but no consumer filters on those subjects any
    more, so none of them is consumed again: work requested before the upgrade and not yet
    handled then is never done. Upgrade with the pipeline idle; the warning below counts what
    was left behind."""
    config = topology.stream_config()
    try:
        info = await js.stream_info(topology.stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", topology.stream)
        return
    dropped = set(info.config.subjects or ()) - set(config.subjects or ())
    await js.update_stream(config)
    if dropped:
        await _report_dropped_subjects(js, topology.stream, sorted(dropped))


async def _report_dropped_subjects(
    js: JetStreamContext, stream: str, subjects: list[str]
) -> None:
    """Log how many stored messages sit under subjects the stream no longer takes."""
    left = 0
    for subject in subjects:
        state = (await js.stream_info(stream, subjects_filter=subject)).state
        left += sum((state.subjects or {}).values())
    log.warning("stream %s no longer takes %s; %d stored message(s) under them will not be "
                "consumed", stream, ", ".join(subjects), left)


async def ensure_consumer(js: JetStreamContext, stream: str, policy: ConsumerPolicy) -> None:
    """Create the durable consumer or update it in place (the server keeps its position)."""
    config = policy.to_config()
    try:
        info = await js.consumer_info(stream, policy.durable)
    except NotFoundError:
        await js.add_consumer(stream, config)
        log.info("created consumer %s on %s", policy.durable, stream)
        return
    current = info.config
    wanted = (
        config.ack_wait,
        config.max_deliver,
        config.backoff,
        config.max_ack_pending,
        config.filter_subject,
        config.filter_subjects,
    )
    have = (
        current.ack_wait,
        current.max_deliver,
        current.backoff,
        current.max_ack_pending,
        current.filter_subject,
        current.filter_subjects,
    )
    if wanted != have:
        await js.add_consumer(stream, config)  # same name: the server updates it
        log.info("updated consumer %s on %s", policy.durable, stream)
