"""Every event belongs to an organization: set when built, kept through JSON, ``default`` for
payloads written before organizations existed, and always a valid slug (a subject token)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from reelvault_common.contracts.events import (
    DEAD_LETTERED,
    EVENT_TYPES,
    ORG_EVENT_TYPES,
    OrgQuotaExceeded,
    OrgQuotaWarning,
    VideoFailed,
    VideoRequested,
    parse_event,
    parse_org_event,
)
from reelvault_common.contracts.tenancy import DEFAULT_ORG

from tests.support.catalog_events import VideoStory

VIDEO = uuid.UUID("0b9d7c59-7f37-4c55-9a7c-5a0f5c2f8e01")
QUOTA: dict[str, Any] = {
    "org": "acme", "quota": "videos_per_month", "period": "2026-01", "used": Decimal("8"),
    "limit": Decimal("10"), "resets_at": datetime(2026, 2, 1, tzinfo=UTC),
}


def one_of_each(org: str) -> list[Any]:
    story = VideoStory(video_id=VIDEO, org=org)
    return [
        story.requested(), story.waiting(), story.started(), story.progressed(50),
        story.completed(),
        story.archive_requested(), story.stored(), story.cancel_requested(), story.deleted(),
        story.failed(),
    ]


def test_every_event_type_carries_its_organization_through_json() -> None:
    events = one_of_each("acme")
    assert {type(event) for event in events} == set(EVENT_TYPES)
    for event in events:
        assert event.org == "acme"
        assert json.loads(event.model_dump_json())["org"] == "acme"
        assert parse_event(event.model_dump_json()).org == "acme"
    quota_crossings = [cls for cls in ORG_EVENT_TYPES if cls.__name__.startswith("OrgQuota")]
    assert quota_crossings == [OrgQuotaWarning, OrgQuotaExceeded]
    for cls in (OrgQuotaWarning, OrgQuotaExceeded):
        event = cls.crossed(**QUOTA)
        assert parse_org_event(event.model_dump_json()).org == "acme"


def test_building_an_event_requires_its_organization() -> None:
    with pytest.raises(TypeError):
        VideoRequested.new(video_id=VIDEO, correlation_id="c",
                           prompt="p", model="sora-2", seconds="4", size="720x1280")


def test_the_organization_is_not_part_of_the_event_id() -> None:
    # The same fact about the same video: a video never moves between organizations.
    assert one_of_each("acme")[3].event_id == one_of_each("globex")[3].event_id


@pytest.mark.parametrize("index", range(len(EVENT_TYPES)))
def test_an_event_written_before_organizations_decodes_as_the_default_one(index: int) -> None:
    payload = json.loads(one_of_each("acme")[index].model_dump_json())
    del payload["org"]
    assert parse_event(json.dumps(payload)).org == DEFAULT_ORG == "default"


@pytest.mark.parametrize("slug", ["Acme", "ac", "-acme", "acme-", "ac.me", "*", ">", "a" * 41,
                                  "ac me", ""])
def test_an_organization_that_is_no_slug_is_refused(slug: str) -> None:
    with pytest.raises(ValidationError):
        VideoRequested.new(video_id=VIDEO, org=slug, correlation_id="c", prompt="p",
                           model="sora-2", seconds="4", size="720x1280")
    payload = json.loads(one_of_each("acme")[0].model_dump_json())
    payload["org"] = slug
    with pytest.raises(ValidationError):
        parse_event(json.dumps(payload))
    with pytest.raises(ValidationError):
        OrgQuotaWarning.crossed(**{**QUOTA, "org": slug})


def test_a_dead_letter_failure_keeps_the_organization() -> None:
    requested = VideoStory(org="globex").requested()
    failed = VideoFailed.dead_lettered(requested, stage="request", consumer="c", deliveries=3,
                                       error="boom")
    assert failed is not None and failed.code == DEAD_LETTERED
    assert (failed.org, failed.video_id) == ("globex", requested.video_id)


def test_a_quota_crossing_has_one_id_per_organization_limit_period_and_level() -> None:
    first = OrgQuotaWarning.crossed(**QUOTA)
    # Republished later with other figures: the same fact, deduplicated by its id.
    again = OrgQuotaWarning.crossed(**{**QUOTA, "used": Decimal("9")})
    assert first.event_id == again.event_id
    assert first.correlation_id == again.correlation_id == "acme:videos_per_month:2026-01"
    others = [
        OrgQuotaExceeded.crossed(**QUOTA),
        OrgQuotaWarning.crossed(**{**QUOTA, "org": "globex"}),
        OrgQuotaWarning.crossed(**{**QUOTA, "period": "2026-02"}),
        OrgQuotaWarning.crossed(**{**QUOTA, "quota": "storage_bytes", "period": "total"}),
    ]
    ids = {first.event_id, *(event.event_id for event in others)}
    assert len(ids) == 1 + len(others)


def test_quota_events_round_trip_and_are_no_video_events() -> None:
    quota_crossings = [cls for cls in ORG_EVENT_TYPES if cls.__name__.startswith("OrgQuota")]
    assert quota_crossings == [OrgQuotaWarning, OrgQuotaExceeded]
    for cls in (OrgQuotaWarning, OrgQuotaExceeded):
        event = cls.crossed(**QUOTA)
        decoded = parse_org_event(event.model_dump_json())
        assert decoded == event and type(decoded) is cls
        assert decoded.used == Decimal("8")
        with pytest.raises(ValidationError):
            parse_event(event.model_dump_json())
