"""The lifecycle events as an AsyncAPI 3.0 document: what consumers in other systems rely on.

``python -m reelvault_common.messaging.asyncapi > docs/events.asyncapi.json`` regenerates the
committed copy; a test fails when the two disagree.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from reelvault_common.contracts.events import EVENT_TYPES, SCHEMA_VERSION, event_type_name
from reelvault_common.messaging.topology import Topology

_DESCRIPTIONS = {
    "video.requested": "The gateway accepted a request; it is durable in JetStream.",
    "video.generation.started": "The generator created the (one) provider job for the video.",
    "video.generation.progress": "The provider reported more progress (only increases).",
    "video.completed": "The provider finished; its copy is downloadable until expires_at.",
    "video.archive.requested": "Someone asked to (re-)copy a finished video into storage.",
    "video.stored": "Video (and thumbnail) are in permanent storage, verified by size and sha256.",
    "video.failed": "The video failed at a stage; code and message say why.",
}


def build_document(namespace: str = "reelvault") -> dict[str, Any]:
    topology = Topology(namespace)
    _, schema = models_json_schema(
        [(cls, "serialization") for cls in EVENT_TYPES], ref_template="#/components/schemas/{model}"
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in EVENT_TYPES:
        kind = event_type_name(cls)
        key = cls.__name__
        messages[key] = {
            "name": key,
            "title": kind,
            "summary": _DESCRIPTIONS[kind],
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {"type": "string", "description": "= event_id (deduplication)"}
                },
                "required": ["Nats-Msg-Id"],
            },
            "payload": {"$ref": f"#/components/schemas/{key}"},
        }
        channels[key] = {
            "address": topology.subject(kind),
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"receive{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"Consume {kind} from stream {topology.stream} with a durable consumer.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "reelvault video lifecycle events",
            "version": str(SCHEMA_VERSION),
            "description": (
                f"One JetStream stream ({topology.stream}; the prefix follows the namespace). "
                "Delivery is at least once: consumers must be idempotent (event_id is stable "
                "for the same fact). Decoders must ignore unknown fields."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schema.get("$defs", {})},
    }


def render(namespace: str = "reelvault") -> str:
    return json.dumps(build_document(namespace), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
