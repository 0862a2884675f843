"""Which stream events become which webhook events, and what their bodies say."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from reelvault_catalog.webhooks.payloads import WEBHOOK_TYPE_OF, delivery_id, webhook_message
from reelvault_common.contracts.catalog import WEBHOOK_EVENT_TYPES
from reelvault_common.contracts.events import OrgQuotaExceeded, OrgQuotaWarning

from tests.support.catalog_events import VideoStory

BASE = "https://api.example.test"


def body_of(event: object) -> dict[str, object]:
    message = webhook_message(event, BASE)  # type: ignore[arg-type]
    assert message is not None
    return json.loads(message.body)  # type: ignore[no-any-return]


def test_a_stored_video_is_video_completed_with_its_files_and_links() -> None:
    story = VideoStory(org="acme")
    event = story.stored()
    message = webhook_message(event, BASE)
    assert message is not None
    assert (message.type, message.org, message.event_id) == ("video.completed", "acme",
                                                              event.event_id)
    body = json.loads(message.body)
    assert body["type"] == "video.completed"
    assert body["timestamp"] == event.occurred_at.isoformat().replace("+00:00", "Z")
    data = body["data"]
    assert data["id"] == str(story.video_id) and data["status"] == "completed"
    assert data["video"] == {"content_type": "video/mp4", "bytes": 1234,
                             "sha256": event.video.sha256,
                             "url": f"{BASE}/v1/videos/{story.video_id}/content"}
    assert data["thumbnail"]["url"] == f"{BASE}/v1/videos/{story.video_id}/content" \
        "?variant=thumbnail"
    assert "bucket" not in json.dumps(data) and "key" not in data["video"]
    assert body_of(story.stored(thumbnail=False))["data"]["thumbnail"] is None  # type: ignore[index]


def test_a_failure_says_where_and_why() -> None:
    story = VideoStory(org="acme")
    data = body_of(story.failed(stage="archive", code="source_expired", message="too late"))
    assert body_of(story.failed())["type"] == "video.failed"
    assert data["data"] == {
        "id": str(story.video_id), "org": "acme", "status": "failed", "stage": "archive",
        "code": "source_expired", "message": "too late", "retryable": False,
        "failed_at": "2026-01-02T03:04:10.678901Z", "correlation_id": "corr-1",
    }


def test_a_deletion_says_who() -> None:
    story = VideoStory(org="acme")
    body = body_of(story.deleted(by="retention"))
    assert body["type"] == "video.deleted"
    assert body["data"]["deleted_by"] == "retention"  # type: ignore[index]
    assert body["data"]["status"] == "deleted"  # type: ignore[index]


def test_a_quota_warning_carries_the_figures_as_strings() -> None:
    event = OrgQuotaWarning.crossed(org="acme", quota="videos_per_month", period="2027-01",
                                    used=Decimal("8"), limit=Decimal("10"),
                                    resets_at=datetime(2027, 2, 1, tzinfo=UTC))
    body = body_of(event)
    assert body["type"] == "quota.warning"
    assert body["data"] == {"org": "acme", "quota": "videos_per_month", "period": "2027-01",
                            "used": "8", "limit": "10", "resets_at": "2027-02-01T00:00:00Z"}


def test_other_events_are_no_webhooks() -> None:
    story = VideoStory(org="acme")
    for event in (story.requested(), story.started(), story.completed(),
                  OrgQuotaExceeded.crossed(org="acme", quota="storage_bytes", period="total",
                                           used=Decimal(1), limit=Decimal(1), resets_at=None)):
        assert webhook_message(event, BASE) is None
    assert set(WEBHOOK_TYPE_OF.values()) == set(WEBHOOK_EVENT_TYPES)


def test_delivery_ids_derive_from_the_event_and_the_endpoint() -> None:
    event, one, two = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert delivery_id(event, one) == delivery_id(event, one)
    assert len({delivery_id(event, one), delivery_id(event, two),
                delivery_id(uuid.uuid4(), one)}) == 3
