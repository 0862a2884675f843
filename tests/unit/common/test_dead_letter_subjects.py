"""A replayed dead letter goes back to its original subject; one stored before subjects carried
the organization goes to that event's subject now (the stream no longer takes the old one)."""

from __future__ import annotations

import json

import pytest
from reelvault_common.messaging.deadletter import DeadLetter, replay_subject
from reelvault_common.messaging.topology import Topology

from tests.support.catalog_events import VideoStory

TOPOLOGY = Topology("ns")


def letter(subject: str, payload: bytes) -> DeadLetter:
    return DeadLetter.of(consumer="ns-svc-work", subject=subject, stream_sequence=7,
                         deliveries=3, payload=payload, headers=None, error="boom",
                         video_id=None)


def test_a_letter_goes_back_to_its_own_subject() -> None:
    event = VideoStory(org="acme").completed()
    subject = TOPOLOGY.subject(event.type, event.org)
    assert replay_subject(TOPOLOGY, letter(subject, event.model_dump_json().encode())) == subject


def test_a_letter_from_before_organizations_goes_to_the_subject_of_its_payloads_org() -> None:
    event = VideoStory(org="acme").completed()
    old = letter("ns.video.completed", event.model_dump_json().encode())
    assert replay_subject(TOPOLOGY, old) == "ns.events.acme.video.completed"


@pytest.mark.parametrize("payload", [
    json.dumps({"type": "video.requested"}).encode(),  # written before events had an org
    json.dumps({"org": "Not A Slug"}).encode(),
    b"[1, 2]",
    b"{not json",
])
def test_a_letter_from_before_organizations_without_a_usable_org_goes_to_the_default_one(
    payload: bytes,
) -> None:
    old = letter("ns.video.requested", payload)
    assert replay_subject(TOPOLOGY, old) == "ns.events.default.video.requested"


def test_subjects_that_name_no_event_type_are_kept() -> None:
    for subject in ("ns.something.else", "other.video.requested"):
        assert replay_subject(TOPOLOGY, letter(subject, b"{}")) == subject
