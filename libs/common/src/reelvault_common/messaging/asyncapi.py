"""The lifecycle events as an AsyncAPI 3.0 document: what consumers in other systems rely on.

Everything a plain NATS client needs is in it: the server, the stream and its limits, the
subjects (with the organization as a channel parameter), the headers sent with every event, the
payload schemas, the dead-letter stream and how to name and configure a consumer of one's own.
JetStream has no AsyncAPI binding (the NATS bindings only know a core NATS ``queue``), so its
specifics are ``x-jetstream`` extensions. Every value is taken from the code that configures
the broker, never restated.

``python -m reelvault_common.messaging.asyncapi > docs/events.asyncapi.json`` regenerates the
committed copy; a test fails when the two disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nats.js.api import AckPolicy, DeliverPolicy, DiscardPolicy, Header, StreamConfig
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from reelvault_common.contracts.events import (
    EVENT_TYPES,
    ORG_EVENT_TYPES,
    SCHEMA_VERSION,
    event_type_name,
)
from reelvault_common.contracts.tenancy import DEFAULT_ORG, ORG_SLUG_PATTERN
from reelvault_common.messaging.deadletter import DeadLetter, dead_letter_stream_config
from reelvault_common.messaging.publisher import CONTENT_TYPE, CORRELATION_HEADER
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.nats_servers import parse_nats_servers
from reelvault_common.runtime.settings import ServiceSettings

NATS_BINDING_VERSION = "0.1.0"
# Our own durables are "<namespace>-<service>-<purpose>" and a namespace has no "_", so a name
# of this shape can never take over (or reset) one of ours.
EXTERNAL_DURABLE = "ext_<system>_<purpose>"
# Set by ``replay_dead_letters`` on a dead letter put back onto its original subject.
REPLAY_HEADER = "Reelvault-Replay-Of"
CONTENT_TYPE_HEADER = "content-type"
EVENT_HEADERS = "EventHeaders"
DEAD_LETTER_HEADERS = "DeadLetterHeaders"
DEAD_LETTERS = "DeadLetters"
# The channel parameter naming the organization, a token of every event subject.
ORG_PARAMETER = "org"

_DESCRIPTIONS = {
    "video.requested": "The gateway accepted a request; it is durable in JetStream.",
    "video.generation.started": "The generator created the (one) provider job for the video.",
    "video.generation.waiting": "The provider's request budget holds the create back: its "
    "estimated start (and place in its organization's queue); sent again only when the "
    "estimate moves by more than a minute.",
    "video.generation.progress": "The provider reported more progress (only increases).",
    "video.completed": "The provider finished; its copy is downloadable until expires_at.",
    "video.archive.requested": "Someone asked to (re-)copy a finished video into storage.",
    "video.stored": "Video (and thumbnail) are in permanent storage, verified by size and sha256.",
    "video.failed": "The video failed at a stage; code and message say why.",
    "video.cancel.requested": "A client asked to stop an unfinished video; it fails with code "
    "`canceled`.",
    "video.deleted": "The video was deleted (by a client or by retention): its row is a "
    "tombstone, its stored objects are removed, and reads of it answer 404.",
    "org.quota.warning": "The organization used 80 % of one of its limits in this period.",
    "org.quota.exceeded": "The organization reached one of its limits: further requests are "
    "refused until the period resets or the limit is raised.",
    "org.webhook_endpoint.disabled": "One of the organization's webhook endpoints failed every "
    "attempt for too long and is no longer sent to (replaying a delivery enables it again).",
}


def _deployed_topology(namespace: str) -> Topology:
    """The topology a service builds from its settings left at their defaults (the
    environment is not read: the document must not depend on the machine rendering it)."""
    return Topology.from_settings(ServiceSettings.model_construct(namespace=namespace))


def _seconds(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def _stream(config: StreamConfig, description: str) -> dict[str, Any]:
    return {
        "name": config.name,
        "description": description,
        "subjects": list(config.subjects or []),
        "retention": config.retention.value if config.retention else None,
        "storage": config.storage.value if config.storage else None,
        # Unset means the server's default, which is "old".
        "discard": (config.discard or DiscardPolicy.OLD).value,
        "max_age_s": _seconds(config.max_age),
        "duplicate_window_s": _seconds(config.duplicate_window),
    }


def _server(namespace: str) -> dict[str, Any]:
    default = parse_nats_servers(ServiceSettings.model_fields["nats_url"].default)[0]
    host = f"{default.host}:{default.port}" if default.port else default.host
    return {
        "host": "{host}",
        "protocol": default.scheme,
        "description": (
            f"NATS with JetStream; connect to {default.scheme}://{{host}}. The streams and "
            f"subjects below are those of namespace {namespace!r}."
        ),
        "variables": {
            "host": {
                "default": host,
                "description": "host:port of a NATS server (or one seed of its cluster).",
            }
        },
    }


def _event_headers(topology: Topology) -> dict[str, Any]:
    msg_id, expected_stream = Header.MSG_ID.value, Header.EXPECTED_STREAM.value
    return {
        "type": "object",
        "description": "NATS headers sent with every event.",
        "properties": {
            msg_id: {
                "type": "string",
                "description": (
                    "The payload's event_id: JetStream drops a republish of the same event "
                    "within the duplicate window. A replayed dead letter carries a fresh id "
                    "('replay:<uuid>'), so deduplicate by the payload's event_id, not by this."
                ),
            },
            CONTENT_TYPE_HEADER: {"type": "string", "const": CONTENT_TYPE},
            CORRELATION_HEADER: {
                "type": "string",
                "description": "The payload's correlation_id (one request across all services).",
            },
            expected_stream: {
                "type": "string",
                "const": topology.stream,
                "description": "JetStream refuses the publish unless the subject is this stream's.",
            },
            REPLAY_HEADER: {
                "type": "string",
                "description": (
                    "Only on a replayed dead letter: its sequence in the dead-letter stream."
                ),
            },
        },
        "required": [msg_id, CONTENT_TYPE_HEADER, CORRELATION_HEADER, expected_stream],
    }


def _dead_letter_headers(topology: Topology) -> dict[str, Any]:
    msg_id, expected_stream = Header.MSG_ID.value, Header.EXPECTED_STREAM.value
    return {
        "type": "object",
        "description": "NATS headers sent with every dead letter.",
        "properties": {
            msg_id: {
                "type": "string",
                "description": "'dl:<consumer>:<stream_sequence>': one letter per message.",
            },
            expected_stream: {"type": "string", "const": topology.dead_letter_stream},
        },
        "required": [msg_id, expected_stream],
    }


def _consumer_advice(topology: Topology) -> dict[str, Any]:
    return {
        "description": (
            "Create a durable pull consumer of your own on the stream (never bind to one of "
            "ours), ack each message explicitly once handled, and filter it to the subjects "
            "you need: filter_subjects takes every organization's events, "
            "one_organization_filter only one organization's. Delivery is at least once: a "
            "message is redelivered until acked, and the same fact may arrive more than "
            "once, so handle events idempotently by event_id. Decoders must ignore unknown "
            "fields."
        ),
        "durable_name": EXTERNAL_DURABLE,
        "reserved_durable_names": topology.durable("<service>", "<purpose>"),
        "ack_policy": AckPolicy.EXPLICIT.value,
        "deliver_policy": {
            "recommended": DeliverPolicy.ALL.value,
            "description": (
                f"'{DeliverPolicy.ALL.value}' on creation replays what the stream still holds "
                f"(see max_age_s); '{DeliverPolicy.NEW.value}' starts with the next event. "
                "A durable resumes where it stopped either way."
            ),
        },
        "filter_subjects": topology.stream_subjects,
        "one_organization_filter": topology.org_events(f"{{{ORG_PARAMETER}}}"),
        "delivery": "at-least-once",
        "idempotency_key": "event_id",
    }


def _schemas(topology: Topology) -> dict[str, Any]:
    """The payload schemas of every contract model, plus the two headers schemas."""
    models: tuple[type[BaseModel], ...] = (*EVENT_TYPES, *ORG_EVENT_TYPES, DeadLetter)
    _, schema = models_json_schema(
        [(cls, "serialization") for cls in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = schema.get("$defs", {})
    headers = {
        EVENT_HEADERS: _event_headers(topology),
        DEAD_LETTER_HEADERS: _dead_letter_headers(topology),
    }
    if clash := headers.keys() & schemas.keys():
        raise ValueError(f"a contract model is named like a headers schema: {sorted(clash)}")
    schemas.update(headers)
    return schemas


def _org_parameter() -> dict[str, Any]:
    """The ``org`` token of every event subject (an AsyncAPI channel parameter)."""
    return {
        "description": (
            "The organization the event belongs to: its slug, also the payload's org. A slug "
            f"matches {ORG_SLUG_PATTERN}; events written before organizations existed belong "
            f"to {DEFAULT_ORG!r}. Subscribe with '*' in its place to take every organization's "
            "events; NATS permissions on one value grant exactly that organization's."
        ),
        "examples": [DEFAULT_ORG, "acme"],
        "location": f"$message.payload#/{ORG_PARAMETER}",
    }


def _message(key: str, title: str, summary: str, headers: str, payload: str) -> dict[str, Any]:
    return {
        "name": key,
        "title": title,
        "summary": summary,
        "contentType": CONTENT_TYPE,
        "headers": {"$ref": f"#/components/schemas/{headers}"},
        "payload": {"$ref": f"#/components/schemas/{payload}"},
    }


def _channel(key: str, address: str, stream: str, *, per_org: bool) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": address,
        "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        "x-jetstream": {"stream": stream},
    }
    if per_org:
        channel["parameters"] = {
            ORG_PARAMETER: {"$ref": f"#/components/parameters/{ORG_PARAMETER}"}
        }
    return channel


def _receive(key: str, summary: str, stream: str, filter_subject: str) -> dict[str, Any]:
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{key}"},
        "summary": summary,
        # JetStream pull consumers share work through their durable, not a core NATS queue group.
        "bindings": {"nats": {"bindingVersion": NATS_BINDING_VERSION}},
        "x-jetstream": {"stream": stream, "filter_subject": filter_subject},
    }


@dataclass
class _Entries:
    """The document's channels, operations and messages, one of each per event type and for
    the dead letters."""

    channels: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        key: str,
        message: dict[str, Any],
        channel: dict[str, Any],
        operation: dict[str, Any],
    ) -> None:
        self.messages[key] = message
        self.channels[key] = channel
        self.operations[f"receive{key}"] = operation


def _event_kinds() -> list[tuple[str, str]]:
    """(class name, event type) of every event in the stream: video events, then
    organization events."""
    return [(cls.__name__, event_type_name(cls)) for cls in EVENT_TYPES] + [
        (cls.__name__, event_type_name(cls)) for cls in ORG_EVENT_TYPES
    ]


def _entries(topology: Topology) -> _Entries:
    entries = _Entries()
    for key, kind in _event_kinds():
        entries.add(
            key,
            _message(key, kind, _DESCRIPTIONS[kind], EVENT_HEADERS, key),
            _channel(key, topology.subject(kind, f"{{{ORG_PARAMETER}}}"), topology.stream,
                     per_org=True),
            _receive(
                key,
                f"Consume {kind} of every organization from stream {topology.stream} with a "
                f"durable consumer (one organization's: its slug in place of '*').",
                topology.stream,
                topology.subject_filter(kind),
            ),
        )
    entries.add(
        DEAD_LETTERS,
        _message(
            DEAD_LETTERS,
            "dead letter",
            "A message one of our consumers gave up on after its last allowed delivery: the "
            "original subject, payload (base64) and headers, and the last error. Its video "
            "was failed with code dead_lettered; an operator can replay it.",
            DEAD_LETTER_HEADERS,
            DeadLetter.__name__,
        ),
        _channel(DEAD_LETTERS, topology.dead_letter_subject, topology.dead_letter_stream,
                 per_org=False),
        _receive(
            DEAD_LETTERS,
            f"Watch stream {topology.dead_letter_stream} (e.g. to alert on it).",
            topology.dead_letter_stream,
            topology.dead_letter_subject,
        ),
    )
    return entries


def _info(topology: Topology, pattern: Topology) -> dict[str, Any]:
    return {
        "title": "reelvault video lifecycle events",
        "version": str(SCHEMA_VERSION),
        "description": (
            f"Every lifecycle event is in one JetStream stream, {topology.stream}, on "
            f"subject {topology.subject('<event type>', '<org>')}: the organization it "
            f"belongs to is a token of its subject, so a NATS permission on "
            f"{topology.org_events('<org>')} grants exactly one organization's events. "
            f"Failures our consumers gave up on are copied to {topology.dead_letter_stream}. "
            f"Names follow the namespace ({pattern.stream}, "
            f"{pattern.subject('<event type>', '<org>')}). Delivery is at least once: "
            "consumers must be idempotent (event_id is stable for the same fact). Decoders "
            "must ignore unknown fields. See x-jetstream for the streams and how to set up a "
            "consumer of your own."
        ),
    }


def _jetstream(namespace: str, topology: Topology, pattern: Topology) -> dict[str, Any]:
    """The ``x-jetstream`` extension: names, streams and consumer advice."""
    return {
        "namespace": namespace,
        "names": {
            "stream": pattern.stream,
            "subjects": pattern.subject("<event type>", "<org>"),
            "organization_subjects": pattern.org_events("<org>"),
            "dead_letter_stream": pattern.dead_letter_stream,
            "dead_letter_subject": pattern.dead_letter_subject,
            "our_durables": pattern.durable("<service>", "<purpose>"),
        },
        "streams": {
            "events": _stream(topology.stream_config(),
                             "The lifecycle events of every organization."),
            "dead_letters": _stream(
                dead_letter_stream_config(topology),
                "Messages our consumers gave up on (payload schema: DeadLetter).",
            ),
        },
        "consumer": _consumer_advice(topology),
    }


def build_document(namespace: str = "reelvault") -> dict[str, Any]:
    topology = _deployed_topology(namespace)
    pattern = Topology("<namespace>")  # the names spelled as patterns of the namespace
    schemas = _schemas(topology)
    entries = _entries(topology)
    return {
        "asyncapi": "3.0.0",
        "info": _info(topology, pattern),
        "defaultContentType": CONTENT_TYPE,
        "servers": {"nats": _server(namespace)},
        "channels": entries.channels,
        "operations": entries.operations,
        "components": {
            "messages": entries.messages,
            "parameters": {ORG_PARAMETER: _org_parameter()},
            "schemas": schemas,
        },
        "x-jetstream": _jetstream(namespace, topology, pattern),
    }


def render(namespace: str = "reelvault") -> str:
    return json.dumps(build_document(namespace), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
