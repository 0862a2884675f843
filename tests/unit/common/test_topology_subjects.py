"""Event subjects carry the organization: one organization's events are one subject subtree,
every organization's events of one type are one filter, and the filters the services use cover
exactly what they decode."""

from __future__ import annotations

import pytest
from reelvault_common.contracts.events import (
    EVENT_TYPES,
    ORG_EVENT_TYPES,
    OrgQuotaExceeded,
    OrgQuotaWarning,
    VideoCompleted,
    VideoRequested,
    event_type_name,
)
from reelvault_common.messaging.topology import Topology

TOPOLOGY = Topology("ns")
VIDEO_TYPES = [event_type_name(cls) for cls in EVENT_TYPES]
ORG_TYPES = [event_type_name(cls) for cls in ORG_EVENT_TYPES]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a trailing ``>`` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)


def test_the_matcher_follows_nats_rules() -> None:
    assert matches("a.*.c", "a.b.c") and not matches("a.*.c", "a.b.x.c")
    assert matches("a.>", "a.b.c") and not matches("a.>", "a")
    assert not matches("a.b", "a.b.c")


def test_a_subject_names_namespace_organization_and_type() -> None:
    assert TOPOLOGY.subject("video.completed", "acme") == "ns.events.acme.video.completed"
    assert TOPOLOGY.subject("org.quota.warning", "default") == "ns.events.default.org.quota.warning"


def test_a_filter_takes_one_type_of_every_organization() -> None:
    assert TOPOLOGY.subject_filter("video.requested") == "ns.events.*.video.requested"
    assert TOPOLOGY.subject_for(VideoRequested) == TOPOLOGY.subject_filter("video.requested")
    assert TOPOLOGY.subject_for(OrgQuotaExceeded) == "ns.events.*.org.quota.exceeded"
    for org in ("default", "acme", "globex"):
        assert matches(TOPOLOGY.subject_for(VideoRequested),
                       TOPOLOGY.subject("video.requested", org))
    # One type's filter never takes another type, even one whose name it prefixes.
    assert not matches(TOPOLOGY.subject_filter("video.generation.started"),
                       TOPOLOGY.subject("video.generation.progress", "acme"))
    assert not matches(TOPOLOGY.subject_for(VideoCompleted),
                       TOPOLOGY.subject("video.completed", "acme") + ".x")


def test_one_organization_is_one_subtree() -> None:
    acme = TOPOLOGY.org_events("acme")
    assert acme == "ns.events.acme.>"
    for kind in VIDEO_TYPES + ORG_TYPES:
        assert matches(acme, TOPOLOGY.subject(kind, "acme"))
        assert not matches(acme, TOPOLOGY.subject(kind, "globex"))
        assert not matches(acme, Topology("other").subject(kind, "acme"))
    # Nothing else of the namespace lives under it.
    for other in (TOPOLOGY.dead_letter_subject, TOPOLOGY.rpc_get, TOPOLOGY.catalog_recorded,
                  TOPOLOGY.key_changes):
        assert not matches(acme, other)


def test_the_stream_takes_every_event_type_of_every_organization() -> None:
    subjects = TOPOLOGY.stream_subjects
    assert len(subjects) == len(set(subjects)) == len(VIDEO_TYPES) + len(ORG_TYPES)
    assert TOPOLOGY.stream_config().subjects == subjects
    for kind in VIDEO_TYPES + ORG_TYPES:
        subject = TOPOLOGY.subject(kind, "acme")
        assert sum(matches(pattern, subject) for pattern in subjects) == 1, kind
    # Subjects before organizations were a token of them are not taken any more.
    assert not any(matches(pattern, "ns.video.requested") for pattern in subjects)


@pytest.mark.parametrize("kind", VIDEO_TYPES + ORG_TYPES)
def test_video_events_filter_takes_video_events_only(kind: str) -> None:
    taken = matches(TOPOLOGY.video_events, TOPOLOGY.subject(kind, "acme"))
    assert taken == (kind in VIDEO_TYPES)


def test_quota_events_are_organization_events() -> None:
    assert {OrgQuotaWarning, OrgQuotaExceeded} <= set(ORG_EVENT_TYPES)
    assert {"org.quota.warning", "org.quota.exceeded"} <= set(ORG_TYPES)
    assert all(kind.startswith("org.") for kind in ORG_TYPES)
