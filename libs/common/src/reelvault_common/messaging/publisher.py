"""Publishing lifecycle events to JetStream, the same way in every service.

Each publish carries the current trace in its headers (``traceparent``/``tracestate``, inside
a ``publish <type>`` producer span) when traces are exported; see ``runtime/telemetry.py``."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.js.api import PubAck

from reelvault_common.contracts.events import OrgEvent, VideoEvent
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime import telemetry

# Every event carries these headers (documented in the AsyncAPI document).
CORRELATION_HEADER = "correlation_id"
CONTENT_TYPE = "application/json"


class EventPublisher:
    """Publishes lifecycle events and waits for the stream's ack.

    ``Nats-Msg-Id`` is the event id, so a republish inside the stream's duplicate window is
    dropped; ``Nats-Expected-Stream`` makes a subject bound to another stream an error rather
    than a silent success."""

    def __init__(self, connection: NatsClient, topology: Topology, timeout_s: float = 5.0) -> None:
        self._js = connection.jetstream()
        self._topology = topology
        self._timeout_s = timeout_s

    async def publish(self, event: VideoEvent | OrgEvent) -> PubAck:
        subject = self._topology.subject(event.type, event.org)
        headers = {
            "Nats-Msg-Id": str(event.event_id),
            "content-type": CONTENT_TYPE,
            CORRELATION_HEADER: event.correlation_id,
        }
        with telemetry.producing(event, subject, headers):
            return await self._js.publish(
                subject,
                event.model_dump_json().encode(),
                timeout=self._timeout_s,
                stream=self._topology.stream,
                headers=headers,
            )
