"""The stream consumer of webhooks: each event endpoints may take becomes one pending delivery
per enabled endpoint of its organization that takes its type, then the dispatcher is woken.

It only writes rows (one transaction per event), never calls an endpoint, so no endpoint can
hold up the stream; it is its own durable consumer (``<namespace>-catalog-webhooks``), apart
from the projection. A redelivered event records nothing new: delivery ids derive from the
event id and the endpoint id.

It filters on the subjects of the stream events ``payloads`` maps, those the stream carries
(an event type added to the contracts later is taken from the next start on).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from reelvault_common.contracts.events import OrgEvent, VideoEvent, parse_event, parse_org_event
from reelvault_common.messaging.consumer import Consumer, Delivery
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ConsumerSettings

from reelvault_catalog.handlers import TRANSIENT_DB_ERRORS
from reelvault_catalog.webhooks.payloads import WEBHOOK_TYPE_OF, webhook_message
from reelvault_catalog.webhooks.repository import WebhookRepository

SourceEvent = VideoEvent | OrgEvent


def recorder_durable(topology: Topology) -> str:
    return topology.durable("catalog", "webhooks")


def recorder_subjects(topology: Topology) -> tuple[str, ...]:
    carried = set(topology.stream_subjects)
    wanted = (topology.subject_filter(kind) for kind in WEBHOOK_TYPE_OF)
    return tuple(subject for subject in wanted if subject in carried)


def recorder_policy(topology: Topology, settings: ConsumerSettings) -> ConsumerPolicy:
    return ConsumerPolicy.of(recorder_durable(topology), recorder_subjects(topology), settings)


def decode_source(payload: bytes) -> SourceEvent:
    """A video or organization event (raises on anything else: the runner terminates it)."""
    kind = json.loads(payload).get("type", "")
    if isinstance(kind, str) and kind.startswith("org."):
        return parse_org_event(payload)
    return parse_event(payload)


class WebhookRecorder:
    def __init__(self, repository: WebhookRepository, public_base_url: str,
                 recorded: Callable[[], None]) -> None:
        self._repository = repository
        self._base = public_base_url
        self._recorded = recorded

    async def handle(self, event: SourceEvent, delivery: Delivery) -> None:
        message = webhook_message(event, self._base)
        if message is None:
            return
        if await self._repository.record(message):
            self._recorded()


def recorder_consumer(topology: Topology, settings: ConsumerSettings,
                      recorder: WebhookRecorder) -> Consumer[SourceEvent]:
    return Consumer.configured(
        settings,
        durable=recorder_durable(topology),
        subjects=recorder_subjects(topology),
        decode=decode_source,
        handle=recorder.handle,
        transient=TRANSIENT_DB_ERRORS,
    )
