from __future__ import annotations

import json
from pathlib import Path

import pytest
from reelvault_common.contracts.events import EVENT_TYPES, ORG_EVENT_TYPES, event_type_name
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
        assert channel["address"].startswith("ns.events.{org}.video.")
        assert document["components"]["messages"][name]["payload"]["$ref"].endswith(name)
        schema = document["components"]["schemas"][name]
        assert {"event_id", "video_id", "org", "occurred_at", "correlation_id"} <= set(
            schema["required"]
        )
    json.dumps(document)  # serialisable as is


@pytest.mark.parametrize("cls", ORG_EVENT_TYPES, ids=lambda cls: cls.__name__)
def test_organization_events_are_described(cls: type) -> None:
    document = build_document("ns")
    name = cls.__name__
    kind = event_type_name(cls)
    assert document["channels"][name]["address"] == f"ns.events.{{org}}.{kind}"
    assert document["components"]["messages"][name]["title"] == kind
    schema = document["components"]["schemas"][name]
    assert {"event_id", "org", "occurred_at", "correlation_id"} <= set(schema["required"])
    if kind.startswith("org.quota."):
        assert {"quota", "period", "used", "limit"} <= set(schema["required"])
    assert "video_id" not in schema["properties"]
    assert Topology("ns").subject_filter(kind) in document["x-jetstream"]["streams"]["events"][
        "subjects"
    ]


def test_the_organization_is_a_channel_parameter_of_every_event_subject() -> None:
    document = build_document("ns")
    parameter = document["components"]["parameters"]["org"]
    assert parameter["location"] == "$message.payload#/org"
    assert "default" in parameter["examples"]
    for name, channel in document["channels"].items():
        if name == "DeadLetters":
            assert "parameters" not in channel
            continue
        assert "{org}" in channel["address"], name
        assert channel["parameters"] == {"org": {"$ref": "#/components/parameters/org"}}
    advice = document["x-jetstream"]["consumer"]
    assert advice["one_organization_filter"] == "ns.events.{org}.>"


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
        # Every organization's messages of the channel: the parameter as a wildcard.
        assert operation["x-jetstream"]["filter_subject"] == channel["address"].replace(
            "{org}", "*"
        )
    assert set(streams["events"]["subjects"]) == {
        operation["x-jetstream"]["filter_subject"]
        for operation in document["operations"].values()
        if operation["x-jetstream"]["stream"] == topology.stream
    }


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
