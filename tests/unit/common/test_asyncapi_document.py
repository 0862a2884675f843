from __future__ import annotations

import json
from pathlib import Path

import pytest
from reelvault_common.contracts.events import EVENT_TYPES
from reelvault_common.messaging.asyncapi import build_document, render
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import NAMESPACE_PATTERN

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


def test_a_plain_nats_client_finds_server_streams_and_headers() -> None:
    document = build_document("ns")
    topology = Topology("ns")
    server = document["servers"]["nats"]
    assert server["protocol"] == "nats"
    assert server["variables"]["host"]["default"] == "127.0.0.1:4222"
    streams = document["x-jetstream"]["streams"]
    assert streams["events"]["name"] == topology.stream == "NS_VIDEOS"
    assert streams["events"]["subjects"] == topology.stream_subjects
    assert (streams["events"]["max_age_s"], streams["events"]["duplicate_window_s"]) == (
        30 * 86400, 600
    )
    assert (streams["events"]["retention"], streams["events"]["storage"]) == ("limits", "file")
    assert streams["events"]["discard"] == "old"
    assert streams["dead_letters"]["name"] == topology.dead_letter_stream
    assert streams["dead_letters"]["subjects"] == [topology.dead_letter_subject]
    headers = document["components"]["schemas"]["EventHeaders"]
    assert set(headers["required"]) == {
        "Nats-Msg-Id", "content-type", "correlation_id", "Nats-Expected-Stream"
    }
    assert headers["properties"]["Nats-Expected-Stream"]["const"] == topology.stream
    for name, operation in document["operations"].items():
        assert "queue" not in operation["bindings"]["nats"], name  # JetStream, not queue groups
        channel = document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[1]]
        assert operation["x-jetstream"]["filter_subject"] == channel["address"]


def test_dead_letters_are_described_with_their_model() -> None:
    document = build_document("ns")
    channel = document["channels"]["DeadLetters"]
    assert channel["address"] == Topology("ns").dead_letter_subject == "ns.deadletter"
    assert channel["x-jetstream"]["stream"] == "NS_DEAD_LETTERS"
    schema = document["components"]["schemas"]["DeadLetter"]
    assert set(schema["properties"]) == set(DeadLetter.model_fields)


@pytest.mark.parametrize("namespace", ["ext", "e", "ext-a", "reelvault"])
def test_the_advised_durable_name_cannot_be_one_of_ours(namespace: str) -> None:
    advice = build_document(namespace)["x-jetstream"]["consumer"]
    prefix = advice["durable_name"].split("<", 1)[0]
    assert prefix and "_" in prefix
    assert NAMESPACE_PATTERN.fullmatch(namespace) and "_" not in NAMESPACE_PATTERN.pattern
    assert not Topology(namespace).durable("catalog", "projection").startswith(prefix)
    assert advice["reserved_durable_names"] == f"{namespace}-<service>-<purpose>"
    assert (advice["ack_policy"], advice["idempotency_key"]) == ("explicit", "event_id")
