from __future__ import annotations

import json
from pathlib import Path

from reelvault_common.contracts.events import EVENT_TYPES
from reelvault_common.messaging.asyncapi import build_document, render

DOCUMENT = Path(__file__).resolve().parents[3] / "docs" / "events.asyncapi.json"


def test_committed_document_matches_the_contracts() -> None:
    assert DOCUMENT.read_text() == render(), (
        "docs/events.asyncapi.json is stale: "
        "python -m reelvault_common.messaging.asyncapi > docs/events.asyncapi.json"
    )


def test_every_event_has_a_channel_message_and_schema() -> None:
    document = build_document("ns")
    assert document["asyncapi"] == "3.0.0"
    for cls in EVENT_TYPES:
        name = cls.__name__
        channel = document["channels"][name]
        assert channel["address"].startswith("ns.video.")
        assert document["components"]["messages"][name]["payload"]["$ref"].endswith(name)
        schema = document["components"]["schemas"][name]
        assert {"event_id", "video_id", "occurred_at", "correlation_id"} <= set(schema["required"])
    json.dumps(document)  # serialisable as is
